/*
 * RECORDS bodies (wire/msg.h): every record kind through the encoder, the
 * frame decoder and wire_dec_records, raw and lz4, with the data pointers and
 * hashes the decoder hands back; the batch limits exactly at and one past
 * each limit; and every field broken in turn, each refused with its code.
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
#define R_CODEC 10
#define R_RESERVED 11
#define R_RAW_LEN 12
#define R_STORED_LEN 16
#define E_AT(i) (WIRE_RECORDS_HDR_LEN + (size_t)(i) * WIRE_ENTRY_LEN)
#define E_KIND 0
#define E_TAG_KIND 1
#define E_DISK 2
#define E_LENGTH 4
#define E_OFFSET 8
#define E_HASH 16
#define E_ID 24

/* ---- building bodies by hand ---------------------------------------------------- */

static void put_entry(wire_buf_t *b, const wire_entry_t *e)
{
    wire_put_u8(b, e->kind);
    wire_put_u8(b, e->tag_kind);
    wire_put_u16(b, e->disk);
    wire_put_u32(b, e->length);
    wire_put_u64(b, e->offset);
    wire_put_u64(b, e->hash);
    wire_put_u64(b, e->id);
}

/* A records body with every header field given; entries as they are (hash
 * included), then dlen bytes of stored data. */
static void rec_body(wire_buf_t *b, uint64_t first_seq, uint16_t count, uint8_t codec, uint8_t reserved,
                     uint32_t raw_len, uint32_t stored_len, const wire_entry_t *e, size_t ne, const void *data,
                     size_t dlen)
{
    wire_buf_reset(b);
    wire_put_u64(b, first_seq);
    wire_put_u16(b, count);
    wire_put_u8(b, codec);
    wire_put_u8(b, reserved);
    wire_put_u32(b, raw_len);
    wire_put_u32(b, stored_len);
    for (size_t i = 0; i < ne; i++)
        put_entry(b, &e[i]);
    wire_put_bytes(b, data, dlen);
    cr_assert(!b->oom);
}

/* Entries with the fields the encoder fills (hashes of writes). */
static wire_entry_t w_entry(uint16_t disk, uint64_t off, uint32_t len, const uint8_t *data)
{
    return (wire_entry_t){.kind = WIRE_R_WRITE, .disk = disk, .length = len, .offset = off,
                          .hash = XXH3_64bits(data, len), .data = data};
}

/* A raw (codec 0) body with these entries and their data concatenated. */
static void rec_plain(wire_buf_t *b, uint64_t first_seq, const wire_entry_t *e, size_t ne)
{
    size_t raw = 0;
    for (size_t i = 0; i < ne; i++)
        if (e[i].kind == WIRE_R_WRITE || e[i].kind == WIRE_R_TAG)
            raw += e[i].length;
    rec_body(b, first_seq, (uint16_t)ne, 0, 0, (uint32_t)raw, (uint32_t)raw, e, ne, NULL, 0);
    for (size_t i = 0; i < ne; i++)
        if (e[i].kind == WIRE_R_WRITE || e[i].kind == WIRE_R_TAG)
            wire_put_bytes(b, e[i].data, e[i].length);
    cr_assert(!b->oom);
}

/* ---- round trips -------------------------------------------------------------------- */

struct want {
    uint64_t first_seq;
    const wire_entry_t *e;
    uint16_t count;
    int codec; /* -1: either */
};

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
    if (w->codec >= 0)
        cr_assert_eq(m->codec, w->codec, "codec %u, want %d", m->codec, w->codec);
    uint32_t raw = 0;
    for (unsigned i = 0; i < w->count; i++)
        if (w->e[i].kind == WIRE_R_WRITE || w->e[i].kind == WIRE_R_TAG)
            raw += w->e[i].length;
    cr_assert_eq(m->raw_len, raw);
    if (m->codec == 0)
        cr_assert_eq(m->stored_len, raw);
    else
        cr_assert_lt(m->stored_len, raw, "lz4 kept though it did not help");
    size_t data_at = WIRE_RECORDS_HDR_LEN + (size_t)w->count * WIRE_ENTRY_LEN;
    cr_assert_eq(len, data_at + m->stored_len);
    cr_assert_eq(m->stored, body + data_at);
    /* Data lives in the body when raw, in scratch when compressed, in entry
     * order with no gaps. */
    const uint8_t *base = m->codec == 0 ? body + data_at : scratch;
    size_t o = 0;
    for (unsigned i = 0; i < w->count; i++) {
        const wire_entry_t *x = &w->e[i], *g = &m->entries[i];
        cr_assert_eq(g->kind, x->kind, "entry %u", i);
        cr_assert_eq(g->tag_kind, x->tag_kind, "entry %u", i);
        cr_assert_eq(g->disk, x->disk, "entry %u", i);
        cr_assert_eq(g->length, x->length, "entry %u", i);
        cr_assert_eq(g->offset, x->offset, "entry %u", i);
        cr_assert_eq(g->id, x->id, "entry %u", i);
        if (x->kind == WIRE_R_WRITE || x->kind == WIRE_R_TAG) {
            cr_assert_eq(g->data, base + o, "entry %u: data at %p, want %p", i, (void *)g->data, (void *)(base + o));
            cr_assert(memcmp(g->data, x->data, x->length) == 0, "entry %u: data differs", i);
            o += x->length;
        } else {
            cr_assert_null(g->data, "entry %u of kind %u has data", i, x->kind);
        }
        if (x->kind == WIRE_R_WRITE)
            cr_assert_eq(g->hash, XXH3_64bits(x->data, x->length), "entry %u: hash", i);
        else
            cr_assert_eq(g->hash, 0, "entry %u: hash of a kind %u", i, x->kind);
    }
    free(scratch);
    free(m);
}

static void roundtrip(uint64_t first_seq, const wire_entry_t *e, uint16_t count, bool compress, int codec)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, first_seq, e, count, compress), 0);
    struct want w = {first_seq, e, count, codec};
    wt_roundtrip(&b, WIRE_T_RECORDS, check_records, &w);
    wire_buf_free(&b);
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

Test(records, every_kind_raw)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, false);
    roundtrip(1, e, (uint16_t)n, false, 0);
    every_kind(e, data, true);
    roundtrip(UINT64_MAX - 100, e, (uint16_t)n, false, 0);
    free(data);
}

Test(records, every_kind_lz4)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, true);
    roundtrip(42, e, (uint16_t)n, true, 1);
    /* Random data: lz4 does not help, so it travels raw. */
    every_kind(e, data, false);
    roundtrip(42, e, (uint16_t)n, true, 0);
    free(data);
}

Test(records, each_kind_alone)
{
    uint8_t *data = malloc(12288);
    wire_entry_t e[8];
    size_t n = every_kind(e, data, true);
    for (size_t i = 0; i < n; i++) {
        roundtrip(7, &e[i], 1, false, 0);
        roundtrip(7, &e[i], 1, true, -1);
    }
    free(data);
}

Test(records, small_data_is_not_compressed)
{
    uint8_t data[64];
    memset(data, 'z', sizeof data);
    wire_entry_t e[1] = {{.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 63, .data = data}};
    roundtrip(1, e, 1, true, 0);
}

Test(records, no_data_at_all)
{
    wire_entry_t e[3] = {{.kind = WIRE_R_FLUSH},
                         {.kind = WIRE_R_ZERO, .length = 512},
                         {.kind = WIRE_R_TRIM, .length = 1024, .offset = 4096}};
    roundtrip(3, e, 3, true, 0);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 3, e, 3, false), 0);
    cr_assert_eq(wt_body_len(&b), WIRE_RECORDS_HDR_LEN + 3 * WIRE_ENTRY_LEN);
    wire_buf_free(&b);
}

Test(records, layout_matches_the_document)
{
    uint8_t data[512];
    memset(data, 7, sizeof data);
    wire_entry_t e[2] = {{.kind = WIRE_R_WRITE, .disk = 0x0302, .length = 512, .offset = 0x0807060504030200ull,
                          .data = data},
                         {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_GROUP, .length = 3, .id = 0x1122334455667788ull,
                          .data = (const uint8_t *)"abc"}};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 0x0a0b0c0d0e0f1011ull, e, 2, false), 0);
    const uint8_t *p = wt_body(&b);
    cr_assert_eq(tm_get16(b.data), WIRE_T_RECORDS);
    cr_assert_eq(tm_get64(p + R_FIRST_SEQ), 0x0a0b0c0d0e0f1011ull);
    cr_assert_eq(tm_get16(p + R_COUNT), 2);
    cr_assert_eq(p[R_CODEC], 0);
    cr_assert_eq(p[R_RESERVED], 0);
    cr_assert_eq(tm_get32(p + R_RAW_LEN), 515);
    cr_assert_eq(tm_get32(p + R_STORED_LEN), 515);
    cr_assert_eq(p[E_AT(0) + E_KIND], WIRE_R_WRITE);
    cr_assert_eq(p[E_AT(0) + E_TAG_KIND], 0);
    cr_assert_eq(tm_get16(p + E_AT(0) + E_DISK), 0x0302);
    cr_assert_eq(tm_get32(p + E_AT(0) + E_LENGTH), 512);
    cr_assert_eq(tm_get64(p + E_AT(0) + E_OFFSET), 0x0807060504030200ull);
    cr_assert_eq(tm_get64(p + E_AT(0) + E_HASH), XXH3_64bits(data, 512));
    cr_assert_eq(tm_get64(p + E_AT(0) + E_ID), 0);
    cr_assert_eq(p[E_AT(1) + E_KIND], WIRE_R_TAG);
    cr_assert_eq(p[E_AT(1) + E_TAG_KIND], WIRE_TAG_GROUP);
    cr_assert_eq(tm_get64(p + E_AT(1) + E_HASH), 0);
    cr_assert_eq(tm_get64(p + E_AT(1) + E_ID), 0x1122334455667788ull);
    cr_assert(memcmp(p + E_AT(2), data, 512) == 0);
    cr_assert(memcmp(p + E_AT(2) + 512, "abc", 3) == 0);
    cr_assert_eq(wt_body_len(&b), E_AT(2) + 515);
    wire_buf_free(&b);
}

Test(records, random_batches)
{
    uint64_t seed = wt_seed();
    cr_log_info("records.random_batches: seed %llu (rerun with TIDEMARK_WIRE_SEED=%llu)", (unsigned long long)seed,
                (unsigned long long)seed);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, seed);
    uint8_t *data = malloc(256u << 10);
    wire_entry_t *e = calloc(64, sizeof *e);
    static const char *tags[] = {"a", "snap-1", "nightly.full", "_x"};
    for (int iter = 0; iter < 40; iter++) {
        bool comp = tmt_rng_next(&rng) & 1;
        tmt_fill(data, 256u << 10, seed, (uint64_t)iter, comp);
        uint16_t n = (uint16_t)tmt_rng_range(&rng, 1, 64);
        size_t used = 0;
        for (unsigned i = 0; i < n; i++) {
            wire_entry_t *x = &e[i];
            *x = (wire_entry_t){.kind = (uint8_t)tmt_rng_range(&rng, WIRE_R_WRITE, WIRE_R_FLUSH)};
            if (x->kind == WIRE_R_WRITE || x->kind == WIRE_R_ZERO || x->kind == WIRE_R_TRIM) {
                x->disk = (uint16_t)tmt_rng_range(&rng, 0, WIRE_MAX_DISKS - 1);
                x->offset = tmt_rng_range(&rng, 0, 1u << 30) * WIRE_SECTOR;
                x->length = (uint32_t)tmt_rng_range(&rng, 1, 16) * WIRE_SECTOR;
                if (x->kind == WIRE_R_WRITE) {
                    x->data = data + used;
                    used += x->length;
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
        struct want w = {(uint64_t)iter + 1, e, n, compress ? -1 : 0};
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
    for (unsigned c = 0; c < 2; c++) {
        tmt_fill(data, WIRE_MAX_BATCH_DATA, 99, c, c == 1);
        for (unsigned i = 0; i < N; i++)
            e[i] = (wire_entry_t){.kind = WIRE_R_WRITE, .disk = (uint16_t)(i % 3), .length = LEN,
                                  .offset = (uint64_t)i * LEN, .data = data + (size_t)i * LEN};
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_records(&b, 1000, e, N, c == 1), 0);
        cr_assert_leq(wt_body_len(&b), WIRE_MAX_BODY);
        wt_run_t run;
        wt_decode_all(b.data, b.len, WT_RANDOM, wt_seed(), &run);
        cr_assert_eq(run.n, 1, "%s", run.reason);
        struct want w = {1000, e, N, c == 1 ? 1 : 0};
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
    cr_assert_eq(wire_enc_records(&b, 1, e, 0, false), -1, "the encoder sent 0 records");
    cr_assert_eq(b.len, 0);
    rec_plain(&b, 1, e, N - 1);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    rec_plain(&b, 1, e, N);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "1025");
    rec_body(&b, 1, 0xffff, 0, 0, 0, 0, NULL, 0, NULL, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, NULL);
    wire_buf_free(&b);
    free(e);
}

Test(records, count_0_refused)
{
    wire_buf_t b = {0};
    rec_body(&b, 1, 0, 0, 0, 0, 0, NULL, 0, NULL, 0);
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
    cr_assert_eq(wire_enc_records(&b, 1, e, 4, false), 0, "the encoder refused 4 MiB");
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), 0, NULL);
    rec_plain(&b, 1, e, 5);
    cr_assert_leq(b.len, WIRE_MAX_BODY, "the test's body must pass the frame limit");
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "limit");
    /* compressed: raw_len is what counts */
    rec_body(&b, 1, 5, 1, 0, WIRE_MAX_BATCH_DATA + WIRE_SECTOR, 4, e, 5, "\x00\x00\x00\x00", 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_TOO_BIG, "limit");
    wire_buf_free(&b);
    free(data);
}

Test(records, write_of_1_mib_accepted_and_1_mib_512_refused)
{
    uint8_t *data = malloc(WIRE_MAX_WRITE + WIRE_SECTOR);
    tmt_fill(data, WIRE_MAX_WRITE + WIRE_SECTOR, 5, 5, false);
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = WIRE_MAX_WRITE, .data = data};
    roundtrip(1, &e, 1, true, 0);
    e.length = WIRE_MAX_WRITE + WIRE_SECTOR;
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    wt_expect(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), WIRE_E_TOO_BIG, NULL);
    /* zero and trim ranges have no such limit: they carry no data */
    wire_entry_t z[2] = {{.kind = WIRE_R_ZERO, .length = 0xfffffe00u}, {.kind = WIRE_R_TRIM, .length = 0xfffffe00u}};
    roundtrip(1, z, 2, false, 0);
    wire_buf_free(&b);
    free(data);
}

/* ---- the header --------------------------------------------------------------- */

/* A small valid raw body to break: a write, a tag and a flush. */
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
    cr_assert_eq(b->data[R_CODEC], compress ? 1 : 0);
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

Test(records, codec_and_reserved)
{
    wire_buf_t b = {0};
    static const uint8_t codecs[] = {2, 3, 0x80, 0xff};
    for (int c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
            good_body(&b, c == 1);
            b.data[R_CODEC] = codecs[i];
            wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "codec");
        }
        good_body(&b, c == 1);
        b.data[R_RESERVED] = 1;
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    }
    wire_buf_free(&b);
}

Test(records, lengths_that_disagree)
{
    wire_buf_t b = {0};
    /* raw: stored_len must equal raw_len */
    good_body(&b, false);
    tm_put32(b.data + R_STORED_LEN, tm_get32(b.data + R_STORED_LEN) - 1);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    /* stored_len and the body disagree (raw and lz4) */
    for (int c = 0; c < 2; c++) {
        good_body(&b, c == 1);
        uint32_t s = tm_get32(b.data + R_STORED_LEN);
        tm_put32(b.data + R_STORED_LEN, s + 1);
        if (c == 0)
            tm_put32(b.data + R_RAW_LEN, s + 1);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
        good_body(&b, c == 1);
        tm_put32(b.data + R_STORED_LEN, 0xffffffffu);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
        /* the count says 2 entries, the body holds 3 */
        good_body(&b, c == 1);
        tm_put16(b.data + R_COUNT, 2);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    }
    wire_buf_free(&b);
}

Test(records, entries_need_more_or_less_than_raw_len)
{
    uint8_t data[2048];
    memset(data, 0x5c, sizeof data);
    wire_entry_t e = w_entry(0, 0, 512, data);
    wire_buf_t b = {0};
    /* the entry wants 512 bytes; 1024 are there */
    rec_body(&b, 1, 1, 0, 0, 1024, 1024, &e, 1, data, 1024);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* the entry wants 1024; 512 are there */
    e = w_entry(0, 0, 1024, data);
    rec_body(&b, 1, 1, 0, 0, 512, 512, &e, 1, data, 512);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* data but no entry wanting any */
    wire_entry_t f = {.kind = WIRE_R_FLUSH};
    rec_body(&b, 1, 1, 0, 0, 4, 4, &f, 1, "abcd", 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    /* the same with lz4 */
    char packed[4096];
    int pn = LZ4_compress_default((const char *)data, packed, 1024, sizeof packed);
    cr_assert_gt(pn, 0);
    e = w_entry(0, 0, 512, data);
    rec_body(&b, 1, 1, 1, 0, 1024, (uint32_t)pn, &e, 1, packed, (size_t)pn);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "data bytes");
    e = w_entry(0, 0, 1024, data);
    rec_body(&b, 1, 1, 1, 0, 1024, (uint32_t)pn, &e, 1, packed, (size_t)pn);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, 0, NULL);
    wire_buf_free(&b);
}

Test(records, lz4_that_does_not_give_raw_len)
{
    uint8_t data[2048];
    memset(data, 0x61, sizeof data);
    wire_entry_t e = w_entry(0, 0, 1024, data);
    char packed[4096];
    wire_buf_t b = {0};
    /* decompresses to 512 bytes, 2048 bytes (over raw_len), or is not lz4 */
    const int sizes[] = {512, 2048};
    for (size_t i = 0; i < 2; i++) {
        int pn = LZ4_compress_default((const char *)data, packed, sizes[i], sizeof packed);
        cr_assert_gt(pn, 0);
        rec_body(&b, 1, 1, 1, 0, 1024, (uint32_t)pn, &e, 1, packed, (size_t)pn);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");
    }
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02};
    rec_body(&b, 1, 1, 1, 0, 1024, sizeof junk, &e, 1, junk, sizeof junk);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");
    rec_body(&b, 1, 1, 1, 0, 1024, 0, &e, 1, NULL, 0);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");
    /* a match reaching back before the start of the output */
    static const uint8_t back[] = {0x1f, 'a', 0xff, 0x7f, 0x00};
    rec_body(&b, 1, 1, 1, 0, 1024, sizeof back, &e, 1, back, sizeof back);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");
    /* every cut of a valid stream */
    int pn = LZ4_compress_default((const char *)data, packed, 1024, sizeof packed);
    for (int cut = 0; cut < pn; cut++) {
        rec_body(&b, 1, 1, 1, 0, 1024, (uint32_t)cut, &e, 1, packed, (size_t)cut);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "decompress");
    }
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

Test(records, a_corrupt_compressed_byte_is_caught)
{
    uint8_t data[8192];
    tmt_fill(data, sizeof data, 9, 9, true);
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = sizeof data, .data = data};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, true), 0);
    cr_assert_eq(wt_body(&b)[R_CODEC], 1);
    size_t data_at = E_AT(1);
    size_t n = wt_body_len(&b);
    uint8_t *body = malloc(n);
    for (size_t at = data_at; at < n; at++) {
        memcpy(body, wt_body(&b), n);
        body[at] ^= 0x04;
        char reason[256];
        int rc = wt_dec_any(WIRE_T_RECORDS, body, n, reason, sizeof reason);
        /* lz4 either fails, or yields other bytes that fail the hash; it
         * can also decode to the same bytes (a literal run's length) only
         * if the data is unchanged */
        if (rc == 0)
            cr_assert(memcmp(wt_records->entries[0].data, data, sizeof data) == 0, "byte %zu: wrong data accepted",
                      at);
        else
            cr_assert(rc == WIRE_E_PROTOCOL || rc == WIRE_E_CHECKSUM, "byte %zu: %d (%s)", at, rc, reason);
    }
    free(body);
    wire_buf_free(&b);
}

/* ---- entries ---------------------------------------------------------------------- */

/* A raw body of the one entry e (with its data); expect code. */
#define expect_entry(...) expect_entry_at(__LINE__, __VA_ARGS__)
static void expect_entry_at(int line, wire_entry_t e, const void *data, int code, const char *has)
{
    wire_buf_t b = {0};
    uint32_t dl = (e.kind == WIRE_R_WRITE || e.kind == WIRE_R_TAG) ? e.length : 0;
    rec_body(&b, 1, 1, 0, 0, dl, dl, &e, 1, data, dl);
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
        rec_body(&b, 1, 1, 0, 0, 0, 0, &e, 1, NULL, 0);
        wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_PROTOCOL, "flush");
        wire_buf_free(&b);
    }
}

Test(records, undefined_kinds)
{
    static const uint8_t kinds[] = {0, 6, 0x7f, 0xff};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        expect_entry((wire_entry_t){.kind = kinds[i]}, NULL, WIRE_E_PROTOCOL, "kind");
}

Test(records, a_bad_entry_after_good_ones)
{
    /* The check runs over every entry, not only the first. */
    wire_entry_t e[4] = {{.kind = WIRE_R_FLUSH}, {.kind = WIRE_R_ZERO, .length = 512}, {.kind = WIRE_R_FLUSH},
                         {.kind = WIRE_R_TRIM, .length = 512, .offset = 100}};
    wire_buf_t b = {0};
    rec_plain(&b, 1, e, 4);
    wt_expect(WIRE_T_RECORDS, b.data, b.len, WIRE_E_RANGE, "record 3");
    wire_buf_free(&b);
}
