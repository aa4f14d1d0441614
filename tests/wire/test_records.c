/*
 * RECORDS bodies (wire/msg.h): every record kind through the encoder, the
 * frame decoder and wire_dec_records, each write compressed on its own or
 * sent raw; the pointers the decoder hands back (raw data in the body,
 * decompressed data in scratch, the bytes as sent in the body) and the
 * hashes; the batch limits exactly at and one past each limit; and every
 * field broken in turn, each refused with its code.
 */
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <xxhash.h>

#include "base/endian.h"
#include "support/tmt.h"
#include "wire/msg.h"
#include "wire/wire.h"
#include "wt.h"

/* Offsets in a records body (docs/agent-protocol.md). */
#define R_FIRST_SEQ 0
#define R_COUNT 8
#define R_RESERVED 10 /* u16 */
#define R_RAW_LEN 12
#define R_STORED_LEN 16
#define E_AT(i) (WIRE_RECORDS_HDR_LEN + (size_t)(i) * WIRE_ENTRY_LEN)
#define E_KIND 0
#define E_TAG_KIND 1
#define E_CODEC 2
#define E_RESERVED1 3 /* u8 */
#define E_DISK 4
#define E_RESERVED2 6 /* u16 */
#define E_LENGTH 8
#define E_STORED 12
#define E_OFFSET 16
#define E_HASH 24
#define E_ID 32

/* The encoder sends writes shorter than this raw (msg.h). */
#define COMPRESS_MIN 128u

/* ---- building bodies by hand ---------------------------------------------------- */

static bool has_data(const wire_entry_t *e)
{
    return e->kind == WIRE_R_WRITE || e->kind == WIRE_R_TAG;
}

static uint32_t raw_bytes(const wire_entry_t *e)
{
    return has_data(e) ? e->length : 0;
}

static void put_entry(wire_buf_t *b, const wire_entry_t *e)
{
    wire_put_u8(b, e->kind);
    wire_put_u8(b, e->tag_kind);
    wire_put_u8(b, e->codec);
    wire_put_u8(b, 0);
    wire_put_u16(b, e->disk);
    wire_put_u16(b, 0);
    wire_put_u32(b, e->length);
    wire_put_u32(b, e->stored);
    wire_put_u64(b, e->offset);
    wire_put_u64(b, e->hash);
    wire_put_u64(b, e->id);
}

/* A records body with every header field given; entries as they are (codec,
 * stored and hash included), then dlen bytes of data. */
static void rec_body(wire_buf_t *b, uint64_t first_seq, uint16_t count, uint16_t reserved, uint32_t raw_len,
                     uint32_t stored_len, const wire_entry_t *e, size_t ne, const void *data, size_t dlen)
{
    wire_buf_reset(b);
    wire_put_u64(b, first_seq);
    wire_put_u16(b, count);
    wire_put_u16(b, reserved);
    wire_put_u32(b, raw_len);
    wire_put_u32(b, stored_len);
    for (size_t i = 0; i < ne; i++)
        put_entry(b, &e[i]);
    wire_put_bytes(b, data, dlen);
    cr_assert(!b->oom);
}

/* A body of these entries as they are: raw_len and stored_len are the sums
 * of their raw and stored bytes, and each entry's `stored` bytes follow in
 * entry order, from stored_data (the bytes as sent) or else from data. */
static void rec_build(wire_buf_t *b, uint64_t first_seq, const wire_entry_t *e, size_t ne)
{
    uint64_t raw = 0, stored = 0;
    for (size_t i = 0; i < ne; i++) {
        raw += raw_bytes(&e[i]);
        stored += e[i].stored;
    }
    rec_body(b, first_seq, (uint16_t)ne, 0, (uint32_t)raw, (uint32_t)stored, e, ne, NULL, 0);
    for (size_t i = 0; i < ne; i++)
        if (e[i].stored)
            wire_put_bytes(b, e[i].stored_data ? e[i].stored_data : e[i].data, e[i].stored);
    cr_assert(!b->oom);
}

/* A raw write as a sender fills it (codec 0, stored = length, hash). */
static wire_entry_t w_entry(uint16_t disk, uint64_t off, uint32_t len, const uint8_t *data)
{
    return (wire_entry_t){.kind = WIRE_R_WRITE, .disk = disk, .length = len, .stored = len, .offset = off,
                          .hash = XXH3_64bits(data, len), .data = data};
}

/* A write sent as one lz4 block of its own, compressed into packed (room
 * for LZ4_compressBound(len) bytes). */
static wire_entry_t w_lz4(uint16_t disk, uint64_t off, uint32_t len, const uint8_t *data, uint8_t *packed)
{
    int pn = LZ4_compress_default((const char *)data, (char *)packed, (int)len, LZ4_compressBound((int)len));
    cr_assert(pn > 0 && (uint32_t)pn < len, "the test's data does not compress (%d of %u bytes)", pn, len);
    wire_entry_t e = w_entry(disk, off, len, data);
    e.codec = 1;
    e.stored = (uint32_t)pn;
    e.stored_data = packed;
    return e;
}

/* A tag as a sender fills it (stored = length). */
static wire_entry_t t_entry(uint8_t tag_kind, uint64_t id, const char *name)
{
    uint32_t n = (uint32_t)strlen(name);
    return (wire_entry_t){.kind = WIRE_R_TAG, .tag_kind = tag_kind, .length = n, .stored = n, .id = id,
                          .data = (const uint8_t *)name};
}

/* ---- round trips -------------------------------------------------------------------- */

struct want {
    uint64_t first_seq;
    const wire_entry_t *e;
    uint16_t count;
    bool compress; /* what the encoder was asked */
};

/* The codec the encoder must pick for x: lz4 for a write of at least
 * COMPRESS_MIN bytes that lz4 makes smaller; raw for everything else. */
static uint8_t want_codec(const wire_entry_t *x, bool compress)
{
    if (!compress || x->kind != WIRE_R_WRITE || x->length < COMPRESS_MIN)
        return 0;
    int bound = LZ4_compressBound((int)x->length);
    char *p = malloc((size_t)bound);
    cr_assert_not_null(p);
    int pn = LZ4_compress_default((const char *)x->data, p, (int)x->length, bound);
    free(p);
    return pn > 0 && (uint32_t)pn < x->length ? 1 : 0;
}

static void check_records(const uint8_t *body, size_t len, void *arg)
{
    const struct want *w = arg;
    wire_records_t *m = malloc(sizeof *m);
    uint8_t *scratch = malloc(WIRE_MAX_BATCH_DATA);
    cr_assert(m && scratch);
    char reason[256] = "";
    cr_assert_eq(wire_dec_records(body, len, m, scratch, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(m->first_seq, w->first_seq);
    cr_assert_eq(m->count, w->count);
    size_t data_at = WIRE_RECORDS_HDR_LEN + (size_t)w->count * WIRE_ENTRY_LEN;
    /* Sent bytes follow each other in the body in entry order; decompressed
     * writes follow each other in scratch in entry order; raw data is used
     * where it lies, in the body. */
    size_t raw = 0, sent = 0, in_scratch = 0;
    for (unsigned i = 0; i < w->count; i++) {
        const wire_entry_t *x = &w->e[i], *g = &m->entries[i];
        cr_assert_eq(g->kind, x->kind, "entry %u", i);
        cr_assert_eq(g->tag_kind, x->tag_kind, "entry %u", i);
        cr_assert_eq(g->disk, x->disk, "entry %u", i);
        cr_assert_eq(g->length, x->length, "entry %u", i);
        cr_assert_eq(g->offset, x->offset, "entry %u", i);
        cr_assert_eq(g->id, x->id, "entry %u", i);
        if (x->kind == WIRE_R_WRITE)
            cr_assert_eq(g->hash, XXH3_64bits(x->data, x->length), "entry %u: hash", i);
        else
            cr_assert_eq(g->hash, 0, "entry %u: hash of a kind %u", i, x->kind);
        uint8_t c = want_codec(x, w->compress);
        cr_assert_eq(g->codec, c, "entry %u (kind %u, %u bytes, compress %d): codec %u, want %u", i, x->kind,
                     x->length, w->compress, g->codec, c);
        uint32_t n = raw_bytes(x);
        if (n == 0) {
            cr_assert_eq(g->stored, 0, "entry %u of kind %u sends %u bytes", i, x->kind, g->stored);
            cr_assert_null(g->data, "entry %u of kind %u has data", i, x->kind);
            continue;
        }
        cr_assert_eq(g->stored_off, data_at + sent, "entry %u: sent bytes at %u, want %zu", i, g->stored_off,
                     data_at + sent);
        cr_assert_eq(g->stored_data, body + g->stored_off, "entry %u: stored_data is not body + stored_off", i);
        if (c == 0) {
            cr_assert_eq(g->stored, n, "entry %u: raw, %u bytes sent for %u", i, g->stored, n);
            cr_assert_eq(g->data, g->stored_data, "entry %u: raw data is not used where it lies", i);
        } else {
            cr_assert_lt(g->stored, n, "entry %u: lz4 kept though it did not help", i);
            cr_assert_eq(g->data, scratch + in_scratch, "entry %u: data at scratch + %td, want + %zu", i,
                         g->data - scratch, in_scratch);
            /* The block as sent decompresses alone, without its neighbours. */
            uint8_t *one = malloc(n);
            uint8_t *block = malloc(g->stored);
            memcpy(block, g->stored_data, g->stored);
            cr_assert_eq(LZ4_decompress_safe((const char *)block, (char *)one, (int)g->stored, (int)n), (int)n,
                         "entry %u: its block does not decompress on its own", i);
            cr_assert(memcmp(one, x->data, n) == 0, "entry %u: its block gives other data", i);
            free(block);
            free(one);
            in_scratch += n;
        }
        cr_assert(memcmp(g->data, x->data, n) == 0, "entry %u: data differs", i);
        raw += n;
        sent += g->stored;
    }
    cr_assert_eq(m->raw_len, raw);
    cr_assert_eq(m->stored_len, sent);
    cr_assert_eq(len, data_at + sent);
    free(scratch);
    free(m);
}

static void roundtrip(uint64_t first_seq, const wire_entry_t *e, uint16_t count, bool compress)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, first_seq, e, count, compress), 0);
    struct want w = {first_seq, e, count, compress};
    wt_roundtrip(&b, WIRE_T_RECORDS, check_records, &w);
    wire_buf_free(&b);
}

/* The codec byte of each entry of the body in b, as encoded. */
static void expect_codecs(const wire_buf_t *b, const uint8_t *codecs, size_t n)
{
    const uint8_t *p = wt_body(b);
    cr_assert_eq(tm_get16(p + R_COUNT), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(p[E_AT(i) + E_CODEC], codecs[i], "entry %zu: codec %u, want %u", i, p[E_AT(i) + E_CODEC],
                     codecs[i]);
}

/* One of every kind and tag kind; data compressible or not. */
static size_t every_kind(wire_entry_t e[8], uint8_t *data, bool compressible)
{
    tmt_fill(data, 12288, 11, compressible, compressible);
    size_t n = 0;
    e[n++] = (wire_entry_t){.kind = WIRE_R_WRITE, .disk = 0, .length = 4096, .offset = 0, .data = data};
    e[n++] = (wire_entry_t){.kind = WIRE_R_ZERO, .disk = 1, .length = 1u << 20, .offset = 1u << 30};
    e[n++] = (wire_entry_t){.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 6, .id = 1,
                            .data = (const uint8_t *)"hourly"};
    e[n++] = (wire_entry_t){.kind = WIRE_R_TRIM, .disk = WIRE_MAX_DISKS - 1, .length = 512,
                            .offset = UINT64_MAX - 1023};
    e[n++] = (wire_entry_t){.kind = WIRE_R_WRITE, .disk = 2, .length = 8192, .offset = 512, .data = data + 4096};
    e[n++] = (wire_entry_t){.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_APP, .length = 10, .id = UINT64_MAX,
                            .data = (const uint8_t *)"pg-backup."};
    e[n++] = (wire_entry_t){.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_GROUP, .length = 5, .id = 0,
                            .data = (const uint8_t *)"g_all"};
    e[n++] = (wire_entry_t){.kind = WIRE_R_FLUSH};
    return n;
}

/* SYNCED: a disk index and nothing else; it carries no data. */
Test(records, synced_roundtrip)
{
    uint8_t data[4096];
    memset(data, 0x5c, sizeof data);
    wire_entry_t e[4] = {{.kind = WIRE_R_WRITE, .disk = 3, .length = 4096, .offset = 1u << 20, .data = data},
                         {.kind = WIRE_R_SYNCED, .disk = 3},
                         {.kind = WIRE_R_SYNCED, .disk = 0},
                         {.kind = WIRE_R_SYNCED, .disk = WIRE_MAX_DISKS - 1}};
    roundtrip(9, e, 4, false);
    roundtrip(9, e, 4, true);
    roundtrip(1, &e[1], 1, false);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 9, e, 4, false), 0);
    cr_assert_eq(tm_get32(wt_body(&b) + R_RAW_LEN), 4096, "SYNCED adds no data");
    char r[256] = "";
    cr_assert_eq(wt_dec_any(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), r, sizeof r), 0, "%s", r);
    cr_assert_eq(wt_records->entries[1].kind, WIRE_R_SYNCED);
    cr_assert_eq(wt_records->entries[1].disk, 3);
    cr_assert_eq(wt_records->entries[3].disk, WIRE_MAX_DISKS - 1);
    wire_buf_free(&b);
}

Test(records, synced_fields_other_than_disk_must_be_zero)
{
    for (int f = 0; f < 7; f++) {
        wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = 1};
        switch (f) {
        case 0: e.tag_kind = 1; break;
        case 1: e.codec = 1; break;
        case 2: e.length = 512; break;
        case 3: e.offset = 512; break;
        case 4: e.hash = 1; break;
        case 5: e.id = 1; break;
        case 6: e.stored = 1; break;
        }
        wire_buf_t b = {0};
        rec_body(&b, 1, 1, 0, 0, 0, &e, 1, NULL, 0);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "synced");
        wire_buf_free(&b);
    }
    wire_entry_t e = {.kind = WIRE_R_SYNCED, .disk = WIRE_MAX_DISKS};
    wire_buf_t b = {0};
    rec_body(&b, 1, 1, 0, 0, 0, &e, 1, NULL, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_RANGE, "disk 64");
    wire_buf_free(&b);
}

Test(records, every_kind_raw)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, false);
    roundtrip(1, e, (uint16_t)n, false);
    /* compressible, but not asked to compress */
    every_kind(e, data, true);
    roundtrip(UINT64_MAX - 100, e, (uint16_t)n, false);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, e, (uint16_t)n, false), 0);
    static const uint8_t none[8] = {0};
    expect_codecs(&b, none, n);
    cr_assert_eq(tm_get32(wt_body(&b) + R_STORED_LEN), tm_get32(wt_body(&b) + R_RAW_LEN));
    wire_buf_free(&b);
    free(data);
}

Test(records, every_kind_lz4)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, true);
    roundtrip(42, e, (uint16_t)n, true);
    /* the two writes travel compressed; tags, ranges and the flush never */
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 42, e, (uint16_t)n, true), 0);
    static const uint8_t writes[8] = {1, 0, 0, 0, 1, 0, 0, 0};
    expect_codecs(&b, writes, n);
    cr_assert_lt(tm_get32(wt_body(&b) + R_STORED_LEN), tm_get32(wt_body(&b) + R_RAW_LEN));
    wire_buf_free(&b);
    /* Random data: lz4 does not help, so every write travels raw. */
    every_kind(e, data, false);
    roundtrip(42, e, (uint16_t)n, true);
    cr_assert_eq(wire_enc_records(&b, 42, e, (uint16_t)n, true), 0);
    static const uint8_t none[8] = {0};
    expect_codecs(&b, none, n);
    cr_assert_eq(tm_get32(wt_body(&b) + R_STORED_LEN), tm_get32(wt_body(&b) + R_RAW_LEN));
    wire_buf_free(&b);
    free(data);
}

Test(records, each_kind_alone)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, true);
    for (size_t i = 0; i < n; i++) {
        roundtrip(7, &e[i], 1, false);
        roundtrip(7, &e[i], 1, true);
    }
    free(data);
}

/* The codec is chosen per write: compressible and incompressible writes of
 * one batch each travel their own way, and the decoder puts the compressed
 * ones into scratch one after another while raw ones stay in the body. */
Test(records, codec_per_write)
{
    uint8_t *zip = malloc(16384), *rnd = malloc(8192);
    tmt_fill(zip, 16384, 21, 1, true);
    tmt_fill(rnd, 8192, 21, 2, false);
    wire_entry_t e[] = {
        {.kind = WIRE_R_WRITE, .length = 4096, .offset = 0, .data = zip},
        {.kind = WIRE_R_WRITE, .length = 4096, .offset = 4096, .data = rnd},
        {.kind = WIRE_R_WRITE, .disk = 1, .length = 8192, .offset = 8192, .data = zip + 4096},
        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 4, .id = 3, .data = (const uint8_t *)"t-01"},
        {.kind = WIRE_R_ZERO, .length = 512, .offset = 0},
        {.kind = WIRE_R_WRITE, .length = 512, .offset = 512, .data = rnd + 4096},
        {.kind = WIRE_R_WRITE, .length = 512, .offset = 1024, .data = zip + 12288},
        {.kind = WIRE_R_FLUSH},
    };
    enum { N = sizeof e / sizeof e[0] };
    static const uint8_t codecs[N] = {1, 0, 1, 0, 0, 0, 1, 0};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 500, e, N, true), 0);
    expect_codecs(&b, codecs, N);
    roundtrip(500, e, N, true);

    /* The pointers, spelled out. */
    const uint8_t *body = wt_body(&b);
    char reason[256] = "";
    cr_assert_eq(wt_dec_any(WIRE_T_RECORDS, body, wt_body_len(&b), reason, sizeof reason), 0, "%s", reason);
    const wire_entry_t *g = wt_records->entries;
    uint32_t s0 = g[0].stored, s2 = g[2].stored, s6 = g[6].stored;
    size_t at = E_AT(N);
    cr_assert_eq(g[0].data, wt_scratch);
    cr_assert_eq(g[0].stored_off, at);
    cr_assert_eq(g[1].data, body + at + s0);
    cr_assert_eq(g[1].stored_off, at + s0);
    cr_assert_eq(g[2].data, wt_scratch + 4096);
    cr_assert_eq(g[2].stored_off, at + s0 + 4096);
    cr_assert_eq(g[3].data, body + at + s0 + 4096 + s2);
    cr_assert_eq(g[5].data, body + at + s0 + 4096 + s2 + 4);
    cr_assert_eq(g[6].data, wt_scratch + 4096 + 8192);
    cr_assert_eq(g[6].stored_off, at + s0 + 4096 + s2 + 4 + 512);
    cr_assert_eq(wt_body_len(&b), at + s0 + 4096 + s2 + 4 + 512 + s6);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(g[i].stored_data, g[i].stored ? body + g[i].stored_off : g[i].stored_data);
    wire_buf_free(&b);
    free(rnd);
    free(zip);
}

Test(records, small_data_is_not_compressed)
{
    uint8_t data[1024];
    memset(data, 'z', sizeof data);
    /* tags never, even when their name would compress */
    wire_entry_t t[1] = {{.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 63, .data = data}};
    roundtrip(1, t, 1, true);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, t, 1, true), 0);
    cr_assert_eq(wt_body(&b)[E_AT(0) + E_CODEC], 0);
    cr_assert_eq(tm_get32(wt_body(&b) + E_AT(0) + E_STORED), 63);
    /* not even one longer than COMPRESS_MIN (too long for a name: the
     * decoder refuses it, but the encoder does not judge names) */
    wire_buf_reset(&b);
    t[0].length = 4 * COMPRESS_MIN;
    cr_assert_eq(wire_enc_records(&b, 1, t, 1, true), 0);
    cr_assert_eq(wt_body(&b)[E_AT(0) + E_CODEC], 0);
    cr_assert_eq(tm_get32(wt_body(&b) + E_AT(0) + E_STORED), 4 * COMPRESS_MIN);
    cr_assert_eq(wt_body_len(&b), E_AT(1) + 4 * COMPRESS_MIN);
    wire_buf_free(&b);
    /* Writes under COMPRESS_MIN bytes go raw. (Such writes are not sector
     * multiples, so the encoder's choice is read from the bytes.) */
    const struct {
        uint32_t len;
        uint8_t codec;
    } cases[] = {{64, 0}, {COMPRESS_MIN - 1, 0}, {COMPRESS_MIN, 1}, {512, 1}, {1024, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wire_entry_t w = {.kind = WIRE_R_WRITE, .length = cases[i].len, .data = data};
        cr_assert_eq(wire_enc_records(&b, 1, &w, 1, true), 0);
        const uint8_t *p = wt_body(&b);
        cr_assert_eq(p[E_AT(0) + E_CODEC], cases[i].codec, "write of %u bytes: codec %u", cases[i].len,
                     p[E_AT(0) + E_CODEC]);
        uint32_t stored = tm_get32(p + E_AT(0) + E_STORED);
        if (cases[i].codec)
            cr_assert_lt(stored, cases[i].len);
        else
            cr_assert_eq(stored, cases[i].len);
        cr_assert_eq(tm_get32(p + R_STORED_LEN), stored);
        cr_assert_eq(wt_body_len(&b), E_AT(1) + stored);
        if (cases[i].len % WIRE_SECTOR == 0)
            roundtrip(1, &w, 1, true);
        wire_buf_reset(&b);
    }
    wire_buf_free(&b);
}

Test(records, no_data_at_all)
{
    wire_entry_t e[3] = {{.kind = WIRE_R_FLUSH},
                         {.kind = WIRE_R_ZERO, .length = 512},
                         {.kind = WIRE_R_TRIM, .length = 1024, .offset = 4096}};
    roundtrip(3, e, 3, true);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 3, e, 3, false), 0);
    cr_assert_eq(wt_body_len(&b), WIRE_RECORDS_HDR_LEN + 3 * WIRE_ENTRY_LEN);
    wire_buf_free(&b);
}

Test(records, layout_matches_the_document)
{
    cr_assert_eq(WIRE_RECORDS_HDR_LEN, 20);
    cr_assert_eq(WIRE_ENTRY_LEN, 40);
    uint8_t data[512];
    memset(data, 7, sizeof data);
    wire_entry_t e[2] = {{.kind = WIRE_R_WRITE, .disk = 0x0302, .length = 512, .offset = 0x0807060504030200ull,
                          .data = data},
                         {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_GROUP, .length = 3, .id = 0x1122334455667788ull,
                          .data = (const uint8_t *)"abc"}};
    for (int compress = 0; compress < 2; compress++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_records(&b, 0x0a0b0c0d0e0f1011ull, e, 2, compress), 0);
        const uint8_t *p = wt_body(&b);
        cr_assert_eq(tm_get16(b.data), WIRE_T_RECORDS);
        /* the write: raw, or one lz4 block of 512 equal bytes */
        uint32_t ws = tm_get32(p + E_AT(0) + E_STORED);
        if (compress)
            cr_assert_lt(ws, 512);
        else
            cr_assert_eq(ws, 512);
        cr_assert_eq(tm_get64(p + R_FIRST_SEQ), 0x0a0b0c0d0e0f1011ull);
        cr_assert_eq(tm_get16(p + R_COUNT), 2);
        cr_assert_eq(tm_get16(p + R_RESERVED), 0);
        cr_assert_eq(tm_get32(p + R_RAW_LEN), 515);
        cr_assert_eq(tm_get32(p + R_STORED_LEN), ws + 3);
        cr_assert_eq(p[E_AT(0) + E_KIND], WIRE_R_WRITE);
        cr_assert_eq(p[E_AT(0) + E_TAG_KIND], 0);
        cr_assert_eq(p[E_AT(0) + E_CODEC], compress ? 1 : 0);
        cr_assert_eq(p[E_AT(0) + E_RESERVED1], 0);
        cr_assert_eq(tm_get16(p + E_AT(0) + E_DISK), 0x0302);
        cr_assert_eq(tm_get16(p + E_AT(0) + E_RESERVED2), 0);
        cr_assert_eq(tm_get32(p + E_AT(0) + E_LENGTH), 512);
        cr_assert_eq(tm_get64(p + E_AT(0) + E_OFFSET), 0x0807060504030200ull);
        cr_assert_eq(tm_get64(p + E_AT(0) + E_HASH), XXH3_64bits(data, 512));
        cr_assert_eq(tm_get64(p + E_AT(0) + E_ID), 0);
        cr_assert_eq(p[E_AT(1) + E_KIND], WIRE_R_TAG);
        cr_assert_eq(p[E_AT(1) + E_TAG_KIND], WIRE_TAG_GROUP);
        cr_assert_eq(p[E_AT(1) + E_CODEC], 0);
        cr_assert_eq(p[E_AT(1) + E_RESERVED1], 0);
        cr_assert_eq(tm_get16(p + E_AT(1) + E_DISK), 0);
        cr_assert_eq(tm_get16(p + E_AT(1) + E_RESERVED2), 0);
        cr_assert_eq(tm_get32(p + E_AT(1) + E_LENGTH), 3);
        cr_assert_eq(tm_get32(p + E_AT(1) + E_STORED), 3);
        cr_assert_eq(tm_get64(p + E_AT(1) + E_OFFSET), 0);
        cr_assert_eq(tm_get64(p + E_AT(1) + E_HASH), 0);
        cr_assert_eq(tm_get64(p + E_AT(1) + E_ID), 0x1122334455667788ull);
        /* the data: the write's bytes as sent, then the tag's name */
        if (compress) {
            uint8_t out[512];
            cr_assert_eq(LZ4_decompress_safe((const char *)p + E_AT(2), (char *)out, (int)ws, sizeof out), 512);
            cr_assert(memcmp(out, data, 512) == 0);
        } else {
            cr_assert(memcmp(p + E_AT(2), data, 512) == 0);
        }
        cr_assert(memcmp(p + E_AT(2) + ws, "abc", 3) == 0);
        cr_assert_eq(wt_body_len(&b), E_AT(2) + ws + 3);
        wire_buf_free(&b);
    }
}

Test(records, random_batches)
{
    uint64_t seed = wt_seed();
    cr_log_info("records.random_batches: seed %llu (rerun with TIDEMARK_WIRE_SEED=%llu)", (unsigned long long)seed,
                (unsigned long long)seed);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, seed);
    /* each write takes its bytes from a compressible or a random half */
    enum { HALF = 256u << 10 };
    uint8_t *data = malloc(2 * HALF);
    wire_entry_t *e = calloc(64, sizeof *e);
    static const char *tags[] = {"a", "snap-1", "nightly.full", "_x"};
    for (int iter = 0; iter < 40; iter++) {
        tmt_fill(data, HALF, seed, (uint64_t)iter, true);
        tmt_fill(data + HALF, HALF, seed, (uint64_t)iter, false);
        uint16_t n = (uint16_t)tmt_rng_range(&rng, 1, 64);
        size_t used[2] = {0, 0};
        for (unsigned i = 0; i < n; i++) {
            wire_entry_t *x = &e[i];
            *x = (wire_entry_t){.kind = (uint8_t)tmt_rng_range(&rng, WIRE_R_WRITE, WIRE_R_FLUSH)};
            if (x->kind == WIRE_R_WRITE || x->kind == WIRE_R_ZERO || x->kind == WIRE_R_TRIM) {
                x->disk = (uint16_t)tmt_rng_range(&rng, 0, WIRE_MAX_DISKS - 1);
                x->offset = tmt_rng_range(&rng, 0, 1u << 30) * WIRE_SECTOR;
                x->length = (uint32_t)tmt_rng_range(&rng, 1, 16) * WIRE_SECTOR;
                if (x->kind == WIRE_R_WRITE) {
                    unsigned h = tmt_rng_next(&rng) & 1;
                    x->data = data + (size_t)h * HALF + used[h];
                    used[h] += x->length;
                }
            } else if (x->kind == WIRE_R_TAG) {
                const char *t = tags[tmt_rng_next(&rng) % 4];
                x->tag_kind = (uint8_t)tmt_rng_range(&rng, WIRE_TAG_CRASH, WIRE_TAG_GROUP);
                x->length = (uint32_t)strlen(t);
                x->data = (const uint8_t *)t;
                x->id = tmt_rng_next(&rng);
            }
        }
        bool compress = tmt_rng_next(&rng) & 1;
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_records(&b, iter + 1, e, n, compress), 0, "seed %llu iter %d",
                     (unsigned long long)seed, iter);
        struct want w = {(uint64_t)iter + 1, e, n, compress};
        wt_roundtrip(&b, WIRE_T_RECORDS, check_records, &w);
        wire_buf_free(&b);
    }
    free(e);
    free(data);
}

/* ---- limits ------------------------------------------------------------------------- */

Test(records, count_1024_and_4_mib_accepted, .timeout = 60)
{
    enum { N = WIRE_MAX_BATCH_RECORDS, LEN = WIRE_MAX_BATCH_DATA / WIRE_MAX_BATCH_RECORDS };
    uint8_t *data = malloc(WIRE_MAX_BATCH_DATA);
    wire_entry_t *e = calloc(N, sizeof *e);
    /* random raw, random with compress asked (still raw: the largest body
     * there is), compressible compressed */
    for (unsigned c = 0; c < 3; c++) {
        bool compressible = c == 2, compress = c != 0;
        tmt_fill(data, WIRE_MAX_BATCH_DATA, 99, c, compressible);
        for (unsigned i = 0; i < N; i++)
            e[i] = (wire_entry_t){.kind = WIRE_R_WRITE, .disk = (uint16_t)(i % 3), .length = LEN,
                                  .offset = (uint64_t)i * LEN, .data = data + (size_t)i * LEN};
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_records(&b, 1000, e, N, compress), 0);
        cr_assert_leq(wt_body_len(&b), WIRE_MAX_BODY);
        if (!compressible)
            cr_assert_eq(wt_body_len(&b), WIRE_RECORDS_HDR_LEN + N * WIRE_ENTRY_LEN + WIRE_MAX_BATCH_DATA);
        wt_run_t run;
        wt_decode_all(b.data, b.len, WT_RANDOM, wt_seed(), &run);
        cr_assert_eq(run.n, 1, "%s", run.reason);
        struct want w = {1000, e, N, compress};
        check_records(run.f[0].body, run.f[0].len, &w);
        wt_run_free(&run);
        wire_buf_free(&b);
    }
    free(e);
    free(data);
}

Test(records, count_1025_refused)
{
    enum { N = WIRE_MAX_BATCH_RECORDS + 1 };
    wire_entry_t *e = calloc(N, sizeof *e);
    for (unsigned i = 0; i < N; i++)
        e[i] = (wire_entry_t){.kind = WIRE_R_FLUSH};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, e, N, false), -1, "the encoder sent 1025 records");
    cr_assert_eq(wire_enc_records(&b, 1, e, N, true), -1, "the encoder sent 1025 records");
    cr_assert_eq(wire_enc_records(&b, 1, e, 0, false), -1, "the encoder sent 0 records");
    cr_assert_eq(b.len, 0);
    rec_build(&b, 1, e, N - 1);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    rec_build(&b, 1, e, N);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "1025");
    rec_body(&b, 1, 0xffff, 0, 0, 0, NULL, 0, NULL, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, NULL);
    wire_buf_free(&b);
    free(e);
}

Test(records, count_0_refused)
{
    wire_buf_t b = {0};
    rec_body(&b, 1, 0, 0, 0, 0, NULL, 0, NULL, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, NULL);
    wire_buf_free(&b);
}

Test(records, raw_data_over_4_mib_refused)
{
    /* Four 1 MiB writes and one of 512 bytes. */
    uint8_t *data = malloc(WIRE_MAX_BATCH_DATA + WIRE_SECTOR);
    memset(data, 0x33, WIRE_MAX_BATCH_DATA + WIRE_SECTOR);
    wire_entry_t e[5];
    for (unsigned i = 0; i < 4; i++)
        e[i] = w_entry(0, (uint64_t)i << 20, WIRE_MAX_WRITE, data + ((size_t)i << 20));
    e[4] = w_entry(0, 4u << 20, WIRE_SECTOR, data + (4u << 20));
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, e, 5, false), -1, "the encoder sent 4 MiB + 512");
    cr_assert_eq(wire_enc_records(&b, 1, e, 5, true), -1, "the encoder sent 4 MiB + 512 compressed");
    cr_assert_eq(b.len, 0);
    cr_assert_eq(wire_enc_records(&b, 1, e, 4, false), 0, "the encoder refused 4 MiB");
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), 0, NULL);
    wire_buf_reset(&b);
    cr_assert_eq(wire_enc_records(&b, 1, e, 4, true), 0, "the encoder refused 4 MiB compressed");
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), 0, NULL);
    rec_build(&b, 1, e, 5);
    cr_assert_leq(b.len, WIRE_MAX_BODY, "the test's body must pass the frame limit");
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "limit");
    /* compressed: raw_len is what counts, not the few KiB sent */
    uint8_t *packed = malloc(5 * (size_t)LZ4_compressBound(WIRE_MAX_WRITE));
    for (unsigned i = 0; i < 5; i++)
        e[i] = w_lz4(0, e[i].offset, e[i].length, e[i].data, packed + (size_t)i * LZ4_compressBound(WIRE_MAX_WRITE));
    rec_build(&b, 1, e, 5);
    cr_assert_eq(tm_get32(b.data + R_RAW_LEN), WIRE_MAX_BATCH_DATA + WIRE_SECTOR);
    cr_assert_lt(b.len, 64u << 10);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "limit");
    /* and without the fifth, the same blocks pass */
    rec_build(&b, 1, e, 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    wire_buf_free(&b);
    free(packed);
    free(data);
}

Test(records, write_of_1_mib_accepted_and_1_mib_512_refused)
{
    uint8_t *data = malloc(WIRE_MAX_WRITE + WIRE_SECTOR);
    tmt_fill(data, WIRE_MAX_WRITE + WIRE_SECTOR, 5, 5, false);
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = WIRE_MAX_WRITE, .data = data};
    roundtrip(1, &e, 1, true);
    e.length = WIRE_MAX_WRITE + WIRE_SECTOR;
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), WIRE_E_TOO_BIG, NULL);
    /* the same compressed: the write's length counts, not its block's */
    tmt_fill(data, WIRE_MAX_WRITE + WIRE_SECTOR, 5, 6, true);
    e.length = WIRE_MAX_WRITE;
    roundtrip(1, &e, 1, true);
    e.length = WIRE_MAX_WRITE + WIRE_SECTOR;
    wire_buf_reset(&b);
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, true), 0);
    cr_assert_eq(wt_body(&b)[E_AT(0) + E_CODEC], 1);
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), WIRE_E_TOO_BIG, NULL);
    /* zero and trim ranges have no such limit: they carry no data */
    wire_entry_t z[2] = {{.kind = WIRE_R_ZERO, .length = 0xfffffe00u}, {.kind = WIRE_R_TRIM, .length = 0xfffffe00u}};
    roundtrip(1, z, 2, false);
    roundtrip(1, z, 2, true);
    wire_buf_free(&b);
    free(data);
}

/* ---- the header --------------------------------------------------------------- */

/* A small valid body to break: a write (compressed when asked), a tag and a
 * flush. */
static uint8_t wdata[1024];
static void good_body(wire_buf_t *b, bool compress)
{
    memset(wdata, 'q', sizeof wdata);
    wire_entry_t e[3] = {{.kind = WIRE_R_WRITE, .length = 1024, .offset = 4096, .data = wdata},
                         {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_APP, .length = 4, .id = 8,
                          .data = (const uint8_t *)"db.1"},
                         {.kind = WIRE_R_FLUSH}};
    wire_buf_reset(b);
    wire_buf_t f = {0};
    cr_assert_eq(wire_enc_records(&f, 10, e, 3, compress), 0);
    wire_put_bytes(b, wt_body(&f), wt_body_len(&f));
    wire_buf_free(&f);
    wt_expect(WIRE_T_RECORDS, b->data, b->len, 0, NULL);
    cr_assert_eq(b->data[E_AT(0) + E_CODEC], compress ? 1 : 0);
}

Test(records, first_seq_0_refused)
{
    wire_buf_t b = {0};
    good_body(&b, false);
    tm_put64(b.data + R_FIRST_SEQ, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_SEQUENCE, NULL);
    wire_buf_free(&b);
}

/* The records of a frame are first_seq .. first_seq + count - 1; a batch
 * that runs past the end of the sequence space would wrap around to 0. */
Test(records, sequence_numbers_do_not_wrap)
{
    wire_buf_t b = {0};
    good_body(&b, false);
    tm_put64(b.data + R_FIRST_SEQ, UINT64_MAX - 2); /* 3 records: ..., UINT64_MAX */
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    tm_put64(b.data + R_FIRST_SEQ, UINT64_MAX - 1); /* the third would be 0 */
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_SEQUENCE, NULL);
    wire_buf_free(&b);
}

Test(records, header_reserved_must_be_zero)
{
    wire_buf_t b = {0};
    static const uint16_t values[] = {1, 0x80, 0x100, 0xffff};
    for (int c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            good_body(&b, c == 1);
            tm_put16(b.data + R_RESERVED, values[i]);
            wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "must be zero");
        }
    }
    wire_buf_free(&b);
}

/* Entry bytes 3 and 6-7 are reserved: a later version may give them a
 * meaning, so version 1 refuses anything but zero there. */
Test(records, entry_reserved_must_be_zero)
{
    wire_buf_t b = {0};
    static const size_t spots[] = {E_RESERVED1, E_RESERVED2, E_RESERVED2 + 1};
    static const uint8_t values[] = {1, 0x80, 0xff};
    for (int c = 0; c < 2; c++) {
        for (unsigned i = 0; i < 3; i++) {
            for (size_t s = 0; s < sizeof spots / sizeof spots[0]; s++) {
                for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                    good_body(&b, c == 1);
                    b.data[E_AT(i) + spots[s]] = values[v];
                    char want[32];
                    snprintf(want, sizeof want, "record %u", i);
                    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, want);
                }
            }
        }
    }
    wire_buf_free(&b);
}

Test(records, stored_len_over_raw_len_refused)
{
    wire_buf_t b = {0};
    for (int c = 0; c < 2; c++) {
        /* one byte more sent than there is raw data, the body long enough
         * for what the header says */
        good_body(&b, c == 1);
        uint32_t raw = tm_get32(b.data + R_RAW_LEN), stored = tm_get32(b.data + R_STORED_LEN);
        tm_put32(b.data + R_STORED_LEN, raw + 1);
        for (uint32_t k = stored; k < raw + 1; k++)
            wire_put_u8(&b, 0);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "larger");
    }
    wire_buf_free(&b);
}

Test(records, lengths_that_disagree)
{
    wire_buf_t b = {0};
    /* stored_len and the body disagree (raw and lz4) */
    for (int c = 0; c < 2; c++) {
        static const int32_t deltas[] = {-1, 1};
        for (size_t d = 0; d < 2; d++) {
            good_body(&b, c == 1);
            uint32_t s = tm_get32(b.data + R_STORED_LEN);
            tm_put32(b.data + R_STORED_LEN, (uint32_t)((int32_t)s + deltas[d]));
            if (c == 0 && deltas[d] > 0)
                tm_put32(b.data + R_RAW_LEN, s + 1);
            wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
        }
        good_body(&b, c == 1);
        tm_put32(b.data + R_STORED_LEN, 0xffffffffu);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
        /* the count says 2 entries, the body holds 3 */
        good_body(&b, c == 1);
        tm_put16(b.data + R_COUNT, 2);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
        /* and 4 */
        good_body(&b, c == 1);
        tm_put16(b.data + R_COUNT, 4);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    }
    wire_buf_free(&b);
}

/* raw_len and stored_len are the sums of the entries' raw and sent bytes;
 * a header whose body length fits but whose sums do not is refused. */
Test(records, header_sums_disagree_with_the_entries)
{
    uint8_t data[2048], packed[LZ4_COMPRESSBOUND(2048)];
    memset(data, 0x5c, sizeof data);
    wire_buf_t b = {0};
    /* raw: the entry wants 512 bytes; 1024 are there */
    wire_entry_t e = w_entry(0, 0, 512, data);
    rec_body(&b, 1, 1, 0, 1024, 1024, &e, 1, data, 1024);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* the entry wants 1024; 512 are there */
    e = w_entry(0, 0, 1024, data);
    rec_body(&b, 1, 1, 0, 512, 512, &e, 1, data, 512);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* data but no entry wanting any */
    wire_entry_t f = {.kind = WIRE_R_FLUSH};
    rec_body(&b, 1, 1, 0, 4, 4, &f, 1, "abcd", 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");

    /* lz4: the raw sum is right, the sent sum is not (4 more bytes sent
     * than the entry's block, or 4 fewer) */
    e = w_lz4(0, 0, 1024, data, packed);
    rec_build(&b, 1, &e, 1);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    rec_body(&b, 1, 1, 0, 1024, e.stored + 4, &e, 1, packed, e.stored);
    wire_put_bytes(&b, "\0\0\0\0", 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    wire_entry_t more = e;
    more.stored = e.stored + 4;
    rec_body(&b, 1, 1, 0, 1024, e.stored, &more, 1, packed, e.stored);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* the sent sum is right, the raw sum is not */
    const uint32_t raws[] = {1023, 1025, 2048, WIRE_MAX_BATCH_DATA};
    for (size_t i = 0; i < sizeof raws / sizeof raws[0]; i++) {
        rec_body(&b, 1, 1, 0, raws[i], e.stored, &e, 1, packed, e.stored);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    }
    /* both sums off by the same amount in two entries: each entry is
     * checked against its own block, so they cannot trade bytes */
    wire_entry_t two[2] = {w_lz4(0, 0, 1024, data, packed), w_entry(0, 1024, 1024, data + 1024)};
    two[0].stored += 1;
    two[1].stored -= 1;
    rec_build(&b, 1, two, 2);
    char reason[256];
    cr_assert_neq(wt_dec_any(WIRE_T_RECORDS, b.data, b.len, reason, sizeof reason), 0, "bytes traded between entries");
    wire_buf_free(&b);
}

/* ---- per-write codecs ---------------------------------------------------------------- */

/* A record after the one under test: a compressed write whose raw bytes
 * leave room for an entry that sends more than it holds, so the header
 * passes and the entry's own rule is what refuses the batch. */
static uint8_t pad_data[4096], pad_packed[LZ4_COMPRESSBOUND(4096)];
static wire_entry_t pad_entry(void)
{
    memset(pad_data, 'p', sizeof pad_data);
    return w_lz4(0, 1u << 20, sizeof pad_data, pad_data, pad_packed);
}

/* [x, pad] with x's `stored` bytes from sent; expect code, a reason naming
 * record 0 and mentioning has. */
#define expect_first(...) expect_first_at(__LINE__, __VA_ARGS__)
static void expect_first_at(int line, wire_entry_t x, const void *sent, int code, const char *has)
{
    x.stored_data = sent;
    wire_entry_t e[2] = {x, pad_entry()};
    wire_buf_t b = {0};
    rec_build(&b, 1, e, 2);
    char reason[256] = "";
    int rc = wt_dec_any(WIRE_T_RECORDS, b.data, b.len, reason, sizeof reason);
    cr_assert_eq(rc, code, "line %d: kind %u codec %u length %u stored %u: code %d (%s), want %d (%s); \"%s\"", line,
                 x.kind, x.codec, x.length, x.stored, rc, wire_err_name(rc), code, wire_err_name(code), reason);
    if (code) {
        cr_assert(strstr(reason, "record 0"), "line %d: reason \"%s\" does not name record 0", line, reason);
        cr_assert(!has || strstr(reason, has), "line %d: reason \"%s\" does not mention \"%s\"", line, reason, has);
    }
    wire_buf_free(&b);
}

Test(records, write_codec_and_stored)
{
    static uint8_t data[2048], junk[2048], packed[LZ4_COMPRESSBOUND(1024)];
    memset(data, 'w', sizeof data);
    memset(junk, 0xa5, sizeof junk);
    wire_entry_t raw = w_entry(0, 0, 1024, data);
    wire_entry_t lz = w_lz4(0, 0, 1024, data, packed);
    /* the two valid ways */
    expect_first(raw, data, 0, NULL);
    expect_first(lz, packed, 0, NULL);
    /* codecs that are not defined, with the write sent raw or packed */
    static const uint8_t codecs[] = {2, 3, 0x80, 0xff};
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
        wire_entry_t e = raw;
        e.codec = codecs[i];
        expect_first(e, data, WIRE_E_PROTOCOL, "codec");
        e = lz;
        e.codec = codecs[i];
        expect_first(e, packed, WIRE_E_PROTOCOL, "codec");
    }
    /* lz4 that saves nothing or sends nothing */
    wire_entry_t e = lz;
    const uint32_t lz_stored[] = {0, 1024, 1025, 2048};
    for (size_t i = 0; i < sizeof lz_stored / sizeof lz_stored[0]; i++) {
        e.stored = lz_stored[i];
        expect_first(e, junk, WIRE_E_PROTOCOL, "codec");
    }
    /* raw with a sent length other than its length */
    e = raw;
    const uint32_t raw_stored[] = {0, 1, 1023, 1025, 2048};
    for (size_t i = 0; i < sizeof raw_stored / sizeof raw_stored[0]; i++) {
        e.stored = raw_stored[i];
        expect_first(e, data, WIRE_E_PROTOCOL, "codec");
    }
}

Test(records, tags_are_sent_raw)
{
    static uint8_t packed[LZ4_COMPRESSBOUND(64)];
    char name[WIRE_MAX_NAME + 1];
    memset(name, 'a', WIRE_MAX_NAME);
    name[WIRE_MAX_NAME] = '\0';
    wire_entry_t t = t_entry(WIRE_TAG_CRASH, 1, name);
    expect_first(t, name, 0, NULL);
    /* a sent length other than the name's */
    const uint32_t stored[] = {0, 1, WIRE_MAX_NAME - 1, WIRE_MAX_NAME + 1, 1000};
    for (size_t i = 0; i < sizeof stored / sizeof stored[0]; i++) {
        wire_entry_t e = t;
        e.stored = stored[i];
        static char sent[1000];
        memset(sent, 'a', sizeof sent);
        expect_first(e, sent, WIRE_E_PROTOCOL, "tag");
    }
    /* a name that lz4 shrinks still may not travel as lz4 */
    int pn = LZ4_compress_default(name, (char *)packed, WIRE_MAX_NAME, sizeof packed);
    cr_assert(pn > 0 && pn < (int)WIRE_MAX_NAME);
    wire_entry_t e = t;
    e.codec = 1;
    e.stored = (uint32_t)pn;
    expect_first(e, packed, WIRE_E_PROTOCOL, "tag");
    static const uint8_t codecs[] = {1, 2, 0xff};
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
        e = t;
        e.codec = codecs[i];
        expect_first(e, name, WIRE_E_PROTOCOL, "tag");
    }
}

Test(records, ranges_and_flushes_send_nothing)
{
    static uint8_t sent[512];
    memset(sent, 'r', sizeof sent);
    for (uint8_t k = WIRE_R_ZERO; k <= WIRE_R_FLUSH; k++) {
        if (k == WIRE_R_TAG)
            continue;
        wire_entry_t base = {.kind = k, .length = k == WIRE_R_FLUSH ? 0 : 512, .offset = 512};
        if (k == WIRE_R_FLUSH)
            base.offset = 0;
        const char *has = k == WIRE_R_FLUSH ? "flush" : "must be zero";
        expect_first(base, NULL, 0, NULL);
        const struct {
            uint8_t codec;
            uint32_t stored;
        } cases[] = {{0, 1}, {0, 512}, {1, 0}, {1, 10}, {2, 0}, {0xff, 0}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            wire_entry_t e = base;
            e.codec = cases[i].codec;
            e.stored = cases[i].stored;
            expect_first(e, sent, WIRE_E_PROTOCOL, has);
        }
    }
}

/* One write's block that does not give exactly its length: refused as that
 * record's, whatever the records around it. */
Test(records, lz4_that_does_not_give_the_write_length)
{
    static uint8_t data[4096], first[1024], packed[LZ4_COMPRESSBOUND(4096)], fpacked[LZ4_COMPRESSBOUND(1024)];
    memset(data, 0x61, sizeof data);
    memset(first, 0x62, sizeof first);
    /* record 0 (sequence 10) is a good compressed write; record 1 the bad one */
    wire_entry_t e[2] = {w_lz4(0, 0, 1024, first, fpacked), w_entry(0, 4096, 1024, data)};
    e[1].codec = 1;
    wire_buf_t b = {0};
#define EXPECT_BAD_BLOCK(block, n)                                                                           \
    do {                                                                                                       \
        e[1].stored = (uint32_t)(n);                                                                           \
        e[1].stored_data = (block);                                                                            \
        rec_build(&b, 10, e, 2);                                                                               \
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");                               \
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "record 1 (sequence 11)");                  \
    } while (0)
    /* decompresses to 512 bytes, to 2048 bytes (over the length), or is not lz4 */
    const int sizes[] = {512, 1020, 1028, 2048};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int pn = LZ4_compress_default((const char *)data, (char *)packed, sizes[i], sizeof packed);
        cr_assert(pn > 0 && pn < 1024);
        EXPECT_BAD_BLOCK(packed, pn);
    }
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02};
    EXPECT_BAD_BLOCK(junk, sizeof junk);
    /* a match reaching back before the start of the output: the previous
     * write's bytes in scratch are not this block's to refer to */
    static const uint8_t back[] = {0x1f, 'a', 0xff, 0x7f, 0x00};
    EXPECT_BAD_BLOCK(back, sizeof back);
    static const uint8_t back1[] = {0x0f, 0x01, 0x00, 0xff, 0xff, 0xff, 0xf0};
    EXPECT_BAD_BLOCK(back1, sizeof back1);
    /* every cut of a valid block, and a valid block with a byte after it */
    int pn = LZ4_compress_default((const char *)data, (char *)packed, 1024, sizeof packed);
    cr_assert(pn > 1);
    for (int cut = 1; cut < pn; cut++)
        EXPECT_BAD_BLOCK(packed, cut);
    packed[pn] = 0;
    EXPECT_BAD_BLOCK(packed, pn + 1);
    /* and the good block passes there */
    e[1].stored = (uint32_t)pn;
    rec_build(&b, 10, e, 2);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    cr_assert(memcmp(wt_records->entries[1].data, data, 1024) == 0);
    /* a block of other bytes of the right length fails the write's hash */
    uint8_t other[1024];
    memset(other, 0x63, sizeof other);
    pn = LZ4_compress_default((const char *)other, (char *)packed, 1024, sizeof packed);
    e[1].stored = (uint32_t)pn;
    rec_build(&b, 10, e, 2);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_CHECKSUM, "sequence 11");
#undef EXPECT_BAD_BLOCK
    wire_buf_free(&b);
}

/* ---- hashes ---------------------------------------------------------------------- */

Test(records, a_corrupt_data_byte_fails_the_write_hash)
{
    uint8_t data[4096];
    tmt_fill(data, sizeof data, 8, 8, false);
    wire_entry_t e[3] = {w_entry(0, 0, 1024, data), w_entry(1, 512, 2048, data + 1024),
                         {.kind = WIRE_R_TAG, .tag_kind = 1, .length = 2, .data = (const uint8_t *)"ok"}};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 50, e, 3, false), 0);
    size_t data_at = WIRE_HDR_LEN + E_AT(3);
    size_t spots[] = {0, 1023, 1024, 1024 + 2047};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        uint8_t *f = malloc(b.len);
        memcpy(f, b.data, b.len);
        f[data_at + spots[i]] ^= 0x01;
        /* as sent: the frame checksum catches it */
        wt_run_t run;
        wt_decode_all(f, b.len, WT_WHOLE, 0, &run);
        cr_assert_eq(run.err, WIRE_E_CHECKSUM);
        wt_run_free(&run);
        /* with the frame checksum recomputed, only the write hash is wrong */
        wt_reseal(f);
        wt_decode_all(f, b.len, WT_RANDOM, i, &run);
        cr_assert_eq(run.n, 1, "the resealed frame was refused: %s", run.reason);
        char want[64];
        snprintf(want, sizeof want, "sequence %d", spots[i] < 1024 ? 50 : 51);
        wt_expect(WIRE_T_RECORDS, run.f[0].body, run.f[0].len, WIRE_E_CHECKSUM, want);
        wt_run_free(&run);
        free(f);
    }
    /* the hash field itself changed */
    uint8_t *f = malloc(b.len);
    memcpy(f, b.data, b.len);
    f[WIRE_HDR_LEN + E_AT(1) + E_HASH + 7] ^= 0x80;
    wt_expect(WIRE_T_RECORDS, f + WIRE_HDR_LEN, b.len - WIRE_HDR_LEN, WIRE_E_CHECKSUM, NULL);
    free(f);
    wire_buf_free(&b);
}

/* Any bit of any write's bytes as sent, raw or compressed, flipped (with the
 * frame checksum made to match): refused as that record's, never accepted
 * as other data. Blocks are independent, so a flip in one write's block
 * cannot be blamed on, or spill into, another. */
Test(records, a_corrupt_sent_byte_never_gives_wrong_data)
{
    uint8_t *zip = malloc(12288), *rnd = malloc(1024);
    tmt_fill(zip, 12288, 9, 9, true);
    tmt_fill(rnd, 1024, 9, 10, false);
    wire_entry_t e[4] = {{.kind = WIRE_R_WRITE, .length = 8192, .data = zip},
                         {.kind = WIRE_R_WRITE, .length = 1024, .offset = 8192, .data = rnd},
                         {.kind = WIRE_R_WRITE, .disk = 1, .length = 4096, .data = zip + 8192},
                         {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 2, .data = (const uint8_t *)"ok"}};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, e, 4, true), 0);
    static const uint8_t codecs[4] = {1, 0, 1, 0};
    expect_codecs(&b, codecs, 4);
    size_t n = wt_body_len(&b);
    char reason[256];
    cr_assert_eq(wt_dec_any(WIRE_T_RECORDS, wt_body(&b), n, reason, sizeof reason), 0, "%s", reason);
    uint32_t off[3], len[3];
    for (unsigned k = 0; k < 3; k++) {
        off[k] = wt_records->entries[k].stored_off;
        len[k] = wt_records->entries[k].stored;
    }
    uint8_t *body = malloc(n);
    static const uint8_t masks[] = {0x01, 0x04, 0x80};
    size_t refused = 0, same = 0;
    for (unsigned k = 0; k < 3; k++) {
        for (size_t at = off[k]; at < off[k] + len[k]; at++) {
            for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
                memcpy(body, wt_body(&b), n);
                body[at] ^= masks[m];
                int rc = wt_dec_any(WIRE_T_RECORDS, body, n, reason, sizeof reason);
                if (rc == 0) {
                    /* lz4 can decode a changed block to the same bytes (an
                     * unused bit of a match offset, say); never to others */
                    cr_assert_eq(codecs[k], 1, "record %u, byte %zu mask 0x%x: a raw write changed unnoticed", k,
                                 at, masks[m]);
                    for (unsigned j = 0; j < 3; j++)
                        cr_assert(memcmp(wt_records->entries[j].data, e[j].data, e[j].length) == 0,
                                  "record %u, byte %zu mask 0x%x: wrong data accepted for record %u", k, at, masks[m],
                                  j);
                    same++;
                    continue;
                }
                refused++;
                if (codecs[k] == 0)
                    cr_assert_eq(rc, WIRE_E_CHECKSUM, "record %u, byte %zu: %d (%s)", k, at, rc, reason);
                else
                    cr_assert(rc == WIRE_E_PROTOCOL || rc == WIRE_E_CHECKSUM, "record %u, byte %zu: %d (%s)", k, at,
                              rc, reason);
                char want[32];
                snprintf(want, sizeof want, "record %u ", k);
                cr_assert(strstr(reason, want), "byte %zu of record %u: the reason blames another: \"%s\"", at, k,
                          reason);
            }
        }
    }
    cr_assert_gt(refused, same);
    /* as sent, the frame checksum is first to catch a flip */
    uint8_t *f = malloc(b.len);
    memcpy(f, b.data, b.len);
    f[WIRE_HDR_LEN + off[2]] ^= 0x04;
    wt_run_t run;
    wt_decode_all(f, b.len, WT_WHOLE, 0, &run);
    cr_assert_eq(run.err, WIRE_E_CHECKSUM);
    wt_run_free(&run);
    free(f);
    free(body);
    wire_buf_free(&b);
    free(rnd);
    free(zip);
}

/* ---- entries ---------------------------------------------------------------------- */

/* A raw body of the one entry e (with its data, stored as a sender sets
 * it); expect code. */
#define expect_entry(...) expect_entry_at(__LINE__, __VA_ARGS__)
static void expect_entry_at(int line, wire_entry_t e, const void *data, int code, const char *has)
{
    wire_buf_t b = {0};
    uint32_t dl = raw_bytes(&e);
    e.codec = 0;
    e.stored = dl;
    rec_body(&b, 1, 1, 0, dl, dl, &e, 1, data, dl);
    char reason[256] = "";
    int rc = wt_dec_any(WIRE_T_RECORDS, b.data, b.len, reason, sizeof reason);
    cr_assert_eq(rc, code, "line %d: kind %u tag_kind %u disk %u length %u offset %llu: code %d (%s), want %d (%s); \"%s\"",
                 line, e.kind, e.tag_kind, e.disk, e.length, (unsigned long long)e.offset, rc, wire_err_name(rc), code,
                 wire_err_name(code), reason);
    if (code) {
        cr_assert(reason[0], "line %d: no reason", line);
        cr_assert(!has || strstr(reason, has), "line %d: reason \"%s\" does not mention \"%s\"", line, reason, has);
    }
    wire_buf_free(&b);
}

Test(records, ranges_are_aligned)
{
    static uint8_t data[4096];
    for (uint8_t k = WIRE_R_WRITE; k <= WIRE_R_TRIM; k++) {
        const uint64_t offs[] = {1, 511, 513, 4095, UINT64_MAX};
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
            wire_entry_t e = {.kind = k, .length = 512, .offset = offs[i]};
            if (k == WIRE_R_WRITE)
                e = w_entry(0, offs[i], 512, data);
            expect_entry(e, data, WIRE_E_RANGE, NULL);
        }
        const uint32_t lens[] = {1, 511, 513, 1000};
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            wire_entry_t e = {.kind = k, .length = lens[i]};
            if (k == WIRE_R_WRITE)
                e = w_entry(0, 0, lens[i], data);
            expect_entry(e, data, WIRE_E_RANGE, NULL);
        }
        wire_entry_t e = {.kind = k, .length = 512, .offset = 512};
        if (k == WIRE_R_WRITE)
            e = w_entry(0, 512, 512, data);
        expect_entry(e, data, 0, NULL);
    }
}

Test(records, empty_ranges)
{
    static uint8_t data[1];
    /* A write of 0 bytes is outside 1..1 MiB; zero and trim of nothing is
     * an empty range. */
    expect_entry(w_entry(0, 0, 0, data), data, WIRE_E_TOO_BIG, NULL);
    expect_entry((wire_entry_t){.kind = WIRE_R_ZERO}, NULL, WIRE_E_RANGE, NULL);
    expect_entry((wire_entry_t){.kind = WIRE_R_TRIM, .offset = 512}, NULL, WIRE_E_RANGE, NULL);
}

/* A range ending past 2^64 - 1 is no range of any disk (sizes are u64),
 * and a later "offset + length > size" check would wrap around and pass
 * it. The last sector that can exist starts at 2^64 - 1024. */
Test(records, ranges_do_not_wrap)
{
    static uint8_t data[1024];
    const uint64_t last = UINT64_MAX - 1023;
    const struct {
        uint64_t off;
        uint32_t len;
        int code;
    } cases[] = {
        {last, 512, 0},
        {last, 1024, WIRE_E_RANGE},             /* ends at 2^64: wraps to 0 */
        {last + 512, 512, WIRE_E_RANGE},        /* likewise */
        {UINT64_MAX - 511 - 4096, 8192, WIRE_E_RANGE},
    };
    for (uint8_t k = WIRE_R_WRITE; k <= WIRE_R_TRIM; k++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            wire_entry_t e = {.kind = k, .length = cases[i].len, .offset = cases[i].off};
            if (k == WIRE_R_WRITE)
                e = w_entry(0, cases[i].off, cases[i].len, data);
            if (e.length <= sizeof data || k != WIRE_R_WRITE)
                expect_entry(e, data, cases[i].code, NULL);
        }
    }
}

Test(records, range_fields_that_must_be_zero)
{
    static uint8_t data[512];
    for (uint8_t k = WIRE_R_WRITE; k <= WIRE_R_TRIM; k++) {
        wire_entry_t base = {.kind = k, .length = 512};
        if (k == WIRE_R_WRITE)
            base = w_entry(0, 0, 512, data);
        wire_entry_t e = base;
        e.disk = WIRE_MAX_DISKS - 1;
        expect_entry(e, data, 0, NULL);
        e.disk = WIRE_MAX_DISKS;
        expect_entry(e, data, WIRE_E_PROTOCOL, NULL);
        e.disk = 0xffff;
        expect_entry(e, data, WIRE_E_PROTOCOL, NULL);
        e = base;
        e.tag_kind = 1;
        expect_entry(e, data, WIRE_E_PROTOCOL, NULL);
        e = base;
        e.id = 1;
        expect_entry(e, data, WIRE_E_PROTOCOL, NULL);
        if (k != WIRE_R_WRITE) {
            e = base;
            e.hash = 1;
            expect_entry(e, data, WIRE_E_PROTOCOL, NULL);
        }
    }
}

Test(records, tags)
{
    wire_entry_t t = {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 3, .id = 5};
    for (uint8_t k = WIRE_TAG_CRASH; k <= WIRE_TAG_GROUP; k++) {
        t.tag_kind = k;
        expect_entry(t, "tg1", 0, NULL);
    }
    static const uint8_t kinds[] = {0, 4, 0xff};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        t.tag_kind = kinds[i];
        expect_entry(t, "tg1", WIRE_E_PROTOCOL, "tag kind");
    }
    t.tag_kind = WIRE_TAG_APP;
    wire_entry_t e = t;
    e.disk = 1;
    expect_entry(e, "tg1", WIRE_E_PROTOCOL, NULL);
    e = t;
    e.offset = 512;
    expect_entry(e, "tg1", WIRE_E_PROTOCOL, NULL);
    e = t;
    e.hash = XXH3_64bits("tg1", 3);
    expect_entry(e, "tg1", WIRE_E_PROTOCOL, NULL);
    e = t;
    e.length = 0;
    expect_entry(e, "", WIRE_E_PROTOCOL, NULL);
    char n[WIRE_MAX_NAME + 1];
    memset(n, 'n', sizeof n);
    e.length = WIRE_MAX_NAME;
    expect_entry(e, n, 0, NULL);
    e.length = WIRE_MAX_NAME + 1;
    expect_entry(e, n, WIRE_E_PROTOCOL, NULL);
}

Test(records, tag_names)
{
    static const char *bad[] = {".", ".x", "-x", "a/b", "a b", "caf\xc3\xa9", "x\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_entry_t t = {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = (uint32_t)strlen(bad[i])};
        expect_entry(t, bad[i], WIRE_E_PROTOCOL, "name");
    }
}

/* A NUL inside the name: "ab\0cd" must not pass as "ab" (the name travels
 * on as 5 bytes into the journal). */
Test(records, tag_name_with_nul)
{
    wire_entry_t t = {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 5};
    expect_entry(t, "ab\0cd", WIRE_E_PROTOCOL, NULL);
    t.length = 3;
    expect_entry(t, "ab\0", WIRE_E_PROTOCOL, NULL);
}

Test(records, flush_fields_must_be_zero)
{
    wire_entry_t f = {.kind = WIRE_R_FLUSH};
    expect_entry(f, NULL, 0, NULL);
    for (int field = 0; field < 6; field++) {
        wire_entry_t e = f;
        switch (field) {
        case 0: e.tag_kind = 1; break;
        case 1: e.disk = 1; break;
        case 2: e.length = 512; break;
        case 3: e.offset = 512; break;
        case 4: e.hash = 1; break;
        case 5: e.id = 1; break;
        }
        /* length 512 would also make the entry want data: give it none */
        wire_buf_t b = {0};
        rec_body(&b, 1, 1, 0, 0, 0, &e, 1, NULL, 0);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "flush");
        wire_buf_free(&b);
    }
}

Test(records, undefined_kinds)
{
    static const uint8_t kinds[] = {0, 8, 0x7f, 0xff};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        expect_entry((wire_entry_t){.kind = kinds[i]}, NULL, WIRE_E_PROTOCOL, "kind");
}

Test(records, a_bad_entry_after_good_ones)
{
    /* The check runs over every entry, not only the first. */
    wire_entry_t e[4] = {{.kind = WIRE_R_FLUSH}, {.kind = WIRE_R_ZERO, .length = 512}, {.kind = WIRE_R_FLUSH},
                         {.kind = WIRE_R_TRIM, .length = 512, .offset = 100}};
    wire_buf_t b = {0};
    rec_build(&b, 1, e, 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_RANGE, "record 3");
    wire_buf_free(&b);
}
