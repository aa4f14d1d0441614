/*
 * Fuzz target: the agent protocol's frame decoder (wire_decode) and the body
 * decoders behind it (wire_dec_*), on the bytes a hostile peer can send.
 *
 * Input: byte 0 says how the rest, the byte stream, is cut into reads (0:
 * one read; otherwise pieces of sizes drawn from a generator it seeds); each
 * read is an exact-size copy, so ASan sees any read past it. Every frame the
 * decoder yields goes to its type's body decoder (records with a
 * WIRE_MAX_BATCH_DATA scratch buffer). The stream is decoded as given and
 * again as a copy with every whole frame's checksum recomputed, because a
 * mutated frame almost never keeps a valid XXH3 and the body decoders would
 * otherwise never be reached. The stream itself also goes straight to every
 * body decoder.
 *
 * Besides "no crash, no read outside a buffer": the decoder keeps its
 * contract on every call (NEED_MORE takes everything, a frame is within its
 * type's limit, bad stays bad), cutting the stream differently changes
 * nothing, and an accepted body is canonical: it satisfies the limits of
 * wire/msg.h and its encoder gives back the same bytes (for RECORDS: the
 * same bytes when every record came raw, the same records and data when
 * writes came compressed, since each write's block is the sender's choice).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lz4.h>

/* XXH3_state_t on the stack needs its layout. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "base/endian.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"
#include "wire/msg.h"
#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Big buffers of the body decoders, kept between inputs. */
static uint8_t scratch[WIRE_MAX_BATCH_DATA];
static wire_records_t recs, again;
static wire_hello_t hello;

/* The bytes an encoder wrote (one frame) are exactly type and body. */
static void same_frame(wire_buf_t *b, int rc, uint16_t type, const uint8_t *body, size_t len)
{
    FUZZ_ASSERT(rc == 0 && !b->oom);
    FUZZ_ASSERT(b->len == WIRE_HDR_LEN + len && tm_get16(b->data) == type);
    FUZZ_ASSERT(len == 0 || memcmp(b->data + WIRE_HDR_LEN, body, len) == 0);
}

static void touch(const uint8_t *p, size_t n)
{
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc ^= p[i];
    (void)acc;
}

static uint32_t entry_data(const wire_entry_t *e)
{
    return (e->kind == WIRE_R_WRITE || e->kind == WIRE_R_TAG) ? e->length : 0;
}

/* An accepted records body: every rule of msg.h holds, and the data the
 * entries point at is where it must be: each record's bytes as sent follow
 * the previous record's in the body; a raw record's data is those bytes; a
 * compressed write's data follows the previous compressed write's in
 * scratch, and its block decompresses alone, without its neighbours. */
static void check_records(const wire_records_t *m, const uint8_t *body, size_t len)
{
    FUZZ_ASSERT(m->first_seq != 0 && m->count >= 1 && m->count <= WIRE_MAX_BATCH_RECORDS);
    FUZZ_ASSERT(m->raw_len <= WIRE_MAX_BATCH_DATA && m->stored_len <= m->raw_len);
    size_t data_at = WIRE_RECORDS_HDR_LEN + (size_t)m->count * WIRE_ENTRY_LEN;
    FUZZ_ASSERT(len == data_at + m->stored_len);
    size_t raw = 0, sent = 0, in_scratch = 0;
    for (unsigned i = 0; i < m->count; i++) {
        const wire_entry_t *e = &m->entries[i];
        FUZZ_ASSERT(e->kind >= WIRE_R_WRITE && e->kind <= WIRE_R_RESYNC);
        FUZZ_ASSERT(e->codec <= 1 && (e->codec == 0 || e->kind == WIRE_R_WRITE));
        uint32_t n = entry_data(e);
        if (e->codec == 1) {
            FUZZ_ASSERT(e->stored >= 1 && e->stored < e->length);
            FUZZ_ASSERT(e->data == scratch + in_scratch);
            in_scratch += n;
            /* One write read back from its bytes as sent alone (an exact
             * copy, so ASan sees a read past the block). */
            uint8_t *block = tm_malloc(e->stored);
            uint8_t *one = tm_malloc(n);
            FUZZ_ASSERT(block != NULL && one != NULL);
            memcpy(block, e->stored_data, e->stored);
            FUZZ_ASSERT(LZ4_decompress_safe((const char *)block, (char *)one, (int)e->stored, (int)n) == (int)n);
            FUZZ_ASSERT(memcmp(one, e->data, n) == 0);
            tm_free(one);
            tm_free(block);
        } else {
            FUZZ_ASSERT(e->stored == n);
            FUZZ_ASSERT(n == 0 ? e->data == NULL : e->data == body + data_at + sent);
        }
        if (e->stored)
            FUZZ_ASSERT(e->stored_off == data_at + sent && e->stored_data == body + e->stored_off);
        if (n)
            touch(e->data, n);
        raw += n;
        sent += e->stored;
        switch (e->kind) {
        case WIRE_R_WRITE:
            FUZZ_ASSERT(e->length >= 1 && e->length <= WIRE_MAX_WRITE);
            FUZZ_ASSERT(XXH3_64bits(e->data, e->length) == e->hash);
            /* fallthrough */
        case WIRE_R_ZERO:
        case WIRE_R_TRIM:
            FUZZ_ASSERT(e->length % WIRE_SECTOR == 0 && e->offset % WIRE_SECTOR == 0 && e->length != 0);
            FUZZ_ASSERT(e->disk < WIRE_MAX_DISKS && e->tag_kind == 0 && e->id == 0);
            FUZZ_ASSERT(e->kind == WIRE_R_WRITE || (e->hash == 0 && e->stored == 0));
            break;
        case WIRE_R_TAG: {
            FUZZ_ASSERT(e->tag_kind >= WIRE_TAG_CRASH && e->tag_kind <= WIRE_TAG_GROUP);
            FUZZ_ASSERT(e->length >= 1 && e->length <= WIRE_MAX_NAME && !e->disk && !e->offset && !e->hash);
            char name[WIRE_MAX_NAME + 1];
            memcpy(name, e->data, e->length);
            name[e->length] = '\0';
            FUZZ_ASSERT(strlen(name) == e->length && wire_name_ok(name));
            break;
        }
        case WIRE_R_FLUSH:
            FUZZ_ASSERT(!e->length && !e->stored && !e->disk && !e->offset && !e->hash && !e->id && !e->tag_kind);
            break;
        case WIRE_R_SYNCED:
        case WIRE_R_RESYNC:
            FUZZ_ASSERT(e->disk < WIRE_MAX_DISKS && !e->length && !e->stored && !e->offset && !e->hash && !e->id &&
                        !e->tag_kind);
            break;
        }
    }
    FUZZ_ASSERT(raw == m->raw_len && sent == m->stored_len);
}

/* Re-encode accepted records, raw and with lz4. Without compression every
 * record goes raw, so a body whose records all came raw must come back as
 * the same bytes. With it, each write is the encoder's own choice (another
 * sender may compress otherwise), so only what it means must come back:
 * decoding either encoding gives the same entries and raw data. (A second
 * scratch buffer: m's decompressed data lives in the first.) */
static void reencode_records(const wire_records_t *m, const uint8_t *body, size_t len)
{
    static uint8_t scratch2[WIRE_MAX_BATCH_DATA];
    bool all_raw = true;
    for (unsigned i = 0; i < m->count; i++)
        all_raw = all_raw && m->entries[i].codec == 0;
    for (int compress = 0; compress < 2; compress++) {
        wire_buf_t b = {0};
        int rc = wire_enc_records(&b, m->first_seq, m->entries, m->count, compress);
        FUZZ_ASSERT(rc == 0 && !b.oom);
        if (all_raw && !compress)
            same_frame(&b, rc, WIRE_T_RECORDS, body, len);
        char reason[160];
        rc = wire_dec_records(b.data + WIRE_HDR_LEN, b.len - WIRE_HDR_LEN, &again, scratch2, reason, sizeof reason);
        FUZZ_ASSERT(rc == 0);
        FUZZ_ASSERT(again.first_seq == m->first_seq && again.count == m->count && again.raw_len == m->raw_len);
        FUZZ_ASSERT(compress || again.stored_len == again.raw_len);
        for (unsigned i = 0; i < m->count; i++) {
            const wire_entry_t *x = &m->entries[i], *y = &again.entries[i];
            FUZZ_ASSERT(x->kind == y->kind && x->tag_kind == y->tag_kind && x->disk == y->disk);
            FUZZ_ASSERT(x->length == y->length && x->offset == y->offset && x->hash == y->hash && x->id == y->id);
            /* only writes, and only when asked, travel compressed */
            FUZZ_ASSERT(y->codec == 0 || (compress && y->kind == WIRE_R_WRITE && y->stored < y->length));
            uint32_t n = entry_data(x);
            FUZZ_ASSERT(n == 0 || memcmp(x->data, y->data, n) == 0);
        }
        wire_buf_free(&b);
    }
}

/* Decode a body as type; on success check it and re-encode it. */
static void check_body(uint16_t type, const uint8_t *body, size_t len)
{
    char reason[160];
    memset(reason, 0, sizeof reason);
    wire_buf_t b = {0};
    int rc = -1;
    switch (type) {
    case WIRE_T_HELLO:
        rc = wire_dec_hello(body, len, &hello, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(hello.version == WIRE_VERSION && hello.ndisks >= 1 && hello.ndisks <= WIRE_MAX_DISKS);
            FUZZ_ASSERT(wire_name_ok(hello.machine));
            for (unsigned i = 0; i < hello.ndisks; i++) {
                FUZZ_ASSERT(wire_name_ok(hello.disks[i].name));
                FUZZ_ASSERT(hello.disks[i].size && hello.disks[i].size % WIRE_SECTOR == 0);
                for (unsigned k = 0; k < i; k++)
                    FUZZ_ASSERT(strcmp(hello.disks[k].name, hello.disks[i].name) != 0);
            }
            same_frame(&b, wire_enc_hello(&b, &hello), type, body, len);
        }
        break;
    case WIRE_T_AUTH: {
        uint8_t mac[WIRE_MAC_LEN];
        rc = wire_dec_auth(body, len, mac, reason, sizeof reason);
        if (rc == 0)
            same_frame(&b, wire_enc_auth(&b, mac), type, body, len);
        break;
    }
    case WIRE_T_RECORDS:
        rc = wire_dec_records(body, len, &recs, scratch, reason, sizeof reason);
        if (rc == 0) {
            check_records(&recs, body, len);
            reencode_records(&recs, body, len);
        }
        break;
    case WIRE_T_CHALLENGE: {
        wire_challenge_t c;
        rc = wire_dec_challenge(body, len, &c, reason, sizeof reason);
        if (rc == 0)
            same_frame(&b, wire_enc_challenge(&b, &c), type, body, len);
        break;
    }
    case WIRE_T_WELCOME: {
        wire_welcome_t w;
        rc = wire_dec_welcome(body, len, &w, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(w.next_seq && w.max_batch_data && w.max_batch_data <= WIRE_MAX_BATCH_DATA);
            FUZZ_ASSERT(w.ndisks >= 1 && w.ndisks <= WIRE_MAX_DISKS);
            for (unsigned k = 0; k < w.ndisks; k++)
                FUZZ_ASSERT(w.disk_state[k] <= 1);
            same_frame(&b, wire_enc_welcome(&b, &w), type, body, len);
        }
        break;
    }
    case WIRE_T_ACK: {
        uint64_t seq;
        rc = wire_dec_ack(body, len, &seq, reason, sizeof reason);
        if (rc == 0)
            same_frame(&b, wire_enc_ack(&b, seq), type, body, len);
        break;
    }
    case WIRE_T_TAG_REQUEST: {
        uint8_t kind;
        uint64_t id;
        char name[WIRE_MAX_NAME + 1];
        rc = wire_dec_tag_request(body, len, &kind, &id, name, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(kind >= WIRE_TAG_CRASH && kind <= WIRE_TAG_GROUP);
            same_frame(&b, wire_enc_tag_request(&b, kind, id, name), type, body, len);
        }
        break;
    }
    case WIRE_T_STOP: {
        wire_stop_t st;
        rc = wire_dec_stop(body, len, &st, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(wire_name_ok(st.name) && strlen(st.reason) <= WIRE_MAX_TEXT);
            same_frame(&b, wire_enc_stop(&b, st.id, st.name, st.reason), type, body, len);
        }
        break;
    }
    case WIRE_T_RESUME: {
        char text[WIRE_MAX_TEXT + 1];
        rc = wire_dec_resume(body, len, text, reason, sizeof reason);
        if (rc == 0)
            same_frame(&b, wire_enc_resume(&b, text), type, body, len);
        break;
    }
    case WIRE_T_ERROR: {
        wire_error_t e;
        rc = wire_dec_error(body, len, &e, reason, sizeof reason);
        if (rc == 0)
            same_frame(&b, wire_enc_error(&b, e.code, e.text), type, body, len);
        break;
    }
    case WIRE_T_RESYNC_REQUEST: {
        wire_resync_request_t q;
        rc = wire_dec_resync_request(body, len, &q, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(q.disk < WIRE_MAX_DISKS && wire_resync_block_ok(q.block_size));
            same_frame(&b, wire_enc_resync_request(&b, &q), type, body, len);
        }
        break;
    }
    case WIRE_T_RESYNC_ACK: {
        uint16_t disk, frames;
        rc = wire_dec_resync_ack(body, len, &disk, &frames, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(disk < WIRE_MAX_DISKS && frames >= 1 && frames <= WIRE_RESYNC_WINDOW);
            same_frame(&b, wire_enc_resync_ack(&b, disk, frames), type, body, len);
        }
        break;
    }
    case WIRE_T_RESYNC_SUMS: {
        wire_resync_sums_t m;
        rc = wire_dec_resync_sums(body, len, &m, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(m.count <= WIRE_MAX_SUMS && len == WIRE_RESYNC_SUMS_HDR_LEN + 8u * (size_t)m.count);
            FUZZ_ASSERT(m.disk < WIRE_MAX_DISKS && wire_resync_block_ok(m.block_size));
            FUZZ_ASSERT(m.count || (m.flags & WIRE_SUMS_LAST));
            static uint64_t sums[WIRE_MAX_SUMS];
            for (uint32_t i = 0; i < m.count; i++)
                sums[i] = wire_sums_get(&m, i);
            m.sums = sums;
            same_frame(&b, wire_enc_resync_sums(&b, &m), type, body, len);
        }
        break;
    }
    case WIRE_T_GROUP_PREPARE: {
        wire_group_prepare_t m;
        rc = wire_dec_group_prepare(body, len, &m, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(m.round != 0 && (m.kind == WIRE_TAG_CRASH || m.kind == WIRE_TAG_APP));
            FUZZ_ASSERT(m.hold_ms >= 1 && m.hold_ms <= WIRE_GROUP_MAX_HOLD_MS && wire_name_ok(m.name));
            same_frame(&b, wire_enc_group_prepare(&b, &m), type, body, len);
        }
        break;
    }
    case WIRE_T_PREPARED: {
        wire_prepared_t m;
        rc = wire_dec_prepared(body, len, &m, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(m.round != 0 && m.status <= WIRE_PREPARED_FAILED);
            /* held: a position, no reason; failed: a reason, no position */
            FUZZ_ASSERT(m.status == WIRE_PREPARED_HELD ? m.reason[0] == '\0' : (m.seq == 0 && m.reason[0] != '\0'));
            same_frame(&b, wire_enc_prepared(&b, &m), type, body, len);
        }
        break;
    }
    case WIRE_T_GROUP_COMMIT:
    case WIRE_T_GROUP_ABORT: {
        uint64_t round;
        bool commit = type == WIRE_T_GROUP_COMMIT;
        rc = commit ? wire_dec_group_commit(body, len, &round, reason, sizeof reason)
                    : wire_dec_group_abort(body, len, &round, reason, sizeof reason);
        if (rc == 0) {
            FUZZ_ASSERT(round != 0 && len == WIRE_GROUP_ROUND_LEN);
            same_frame(&b, commit ? wire_enc_group_commit(&b, round) : wire_enc_group_abort(&b, round), type, body,
                       len);
        }
        break;
    }
    default:
        FUZZ_ASSERT(!"the decoder yielded a frame of an unknown type");
    }
    wire_buf_free(&b);
    if (rc != 0) {
        /* The codes a body decoder may give, each with a sentence. */
        FUZZ_ASSERT(rc == WIRE_E_PROTOCOL || rc == WIRE_E_CHECKSUM || rc == WIRE_E_TOO_BIG ||
                    rc == WIRE_E_VERSION || rc == WIRE_E_SEQUENCE || rc == WIRE_E_RANGE);
        FUZZ_ASSERT(reason[0] != '\0' && memchr(reason, '\0', sizeof reason) != NULL);
    }
}

/* What a run over a stream saw; two cuttings of one stream must agree. */
typedef struct summary {
    size_t frames;
    size_t consumed;
    wire_status_t last;
    int err;
    uint64_t digest; /* of every frame's type, length and body */
} summary_t;

static size_t next_chunk(uint8_t plan, uint64_t *state, size_t left)
{
    if (plan == 0)
        return left;
    /* xorshift64, seeded by the plan; the plan's low bits pick the sizes */
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    static const size_t max[] = {1, 2, 3, 8, 17, 64, 700, 5000};
    size_t n = 1 + (size_t)(x % max[plan & 7]);
    return n < left ? n : left;
}

static void run(const uint8_t *buf, size_t len, uint8_t plan, summary_t *s)
{
    memset(s, 0, sizeof *s);
    s->last = WIRE_NEED_MORE;
    XXH3_state_t h;
    XXH3_64bits_reset(&h);
    wire_decoder_t d;
    wire_decoder_init(&d);
    uint64_t state = 0x9e3779b97f4a7c15ull * (plan + 1u);
    size_t off = 0, chunk_start = 0, chunk_end = 0;
    uint8_t *chunk = NULL;
    while (off < len) {
        if (off == chunk_end) {
            /* An exact copy of the next read: the decoder must stay in it. */
            chunk_start = off;
            chunk_end = off + next_chunk(plan, &state, len - off);
            tm_free(chunk);
            chunk = tm_malloc(chunk_end - chunk_start);
            FUZZ_ASSERT(chunk != NULL);
            memcpy(chunk, buf + chunk_start, chunk_end - chunk_start);
        }
        size_t n = chunk_end - off;
        size_t used = (size_t)-1;
        wire_status_t st = wire_decode(&d, chunk + (off - chunk_start), n, &used);
        FUZZ_ASSERT(used <= n);
        off += used;
        s->consumed += used;
        s->last = st;
        if (st == WIRE_NEED_MORE) {
            FUZZ_ASSERT(used == n);
            continue;
        }
        if (st == WIRE_FRAME) {
            FUZZ_ASSERT(d.hdr.flags == 0 && d.hdr.body_len <= wire_body_limit(d.hdr.type));
            s->frames++;
            uint8_t meta[6];
            tm_put16(meta, d.hdr.type);
            tm_put32(meta + 2, d.hdr.body_len);
            XXH3_64bits_update(&h, meta, sizeof meta);
            if (d.hdr.body_len) {
                XXH3_64bits_update(&h, d.body, d.hdr.body_len);
                /* The body decoder gets an exact copy too. */
                uint8_t *body = tm_malloc(d.hdr.body_len);
                FUZZ_ASSERT(body != NULL);
                memcpy(body, d.body, d.hdr.body_len);
                check_body(d.hdr.type, body, d.hdr.body_len);
                tm_free(body);
            } else {
                /* as a server would pass it: d.body may still be NULL */
                check_body(d.hdr.type, d.body, 0);
            }
            continue;
        }
        FUZZ_ASSERT(st == WIRE_BAD && d.err > 0 && d.reason[0] != '\0');
        FUZZ_ASSERT(strcmp(wire_err_name(d.err), "unknown") != 0);
        s->err = d.err;
        /* Bad stays bad and takes nothing more. */
        int err = d.err;
        char reason[sizeof d.reason];
        memcpy(reason, d.reason, sizeof reason);
        used = 1;
        FUZZ_ASSERT(wire_decode(&d, buf, len, &used) == WIRE_BAD && used == 0);
        FUZZ_ASSERT(d.err == err && strcmp(d.reason, reason) == 0);
        break;
    }
    tm_free(chunk);
    wire_decoder_free(&d);
    s->digest = XXH3_64bits_digest(&h);
}

/* Give every whole frame of the stream a valid checksum, up to the first
 * header the decoder refuses anyway (unknown type, flags, length). */
static void reseal(uint8_t *p, size_t len)
{
    size_t off = 0;
    while (len - off >= WIRE_HDR_LEN) {
        uint8_t *h = p + off;
        uint32_t body_len = tm_get32(h + 4);
        uint32_t limit = wire_body_limit(tm_get16(h));
        if (limit == 0 || tm_get16(h + 2) != 0 || body_len > limit || body_len > len - off - WIRE_HDR_LEN)
            return;
        XXH3_state_t st;
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, h, 8);
        XXH3_64bits_update(&st, h + WIRE_HDR_LEN, body_len);
        tm_put64(h + 8, XXH3_64bits_digest(&st));
        off += WIRE_HDR_LEN + body_len;
    }
}

static void same_summary(const summary_t *a, const summary_t *b)
{
    FUZZ_ASSERT(a->frames == b->frames && a->consumed == b->consumed && a->last == b->last);
    FUZZ_ASSERT(a->err == b->err && a->digest == b->digest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t plan = data[0];
    const uint8_t *stream = data + 1;
    size_t len = size - 1;

    /* One read, then the plan's reads: the same frames, the same end. */
    summary_t whole, cut;
    run(stream, len, 0, &whole);
    if (plan != 0) {
        run(stream, len, plan, &cut);
        same_summary(&whole, &cut);
    }

    /* Resealed: no whole frame can fail its checksum now. */
    uint8_t *copy = tm_malloc(len ? len : 1);
    FUZZ_ASSERT(copy != NULL);
    memcpy(copy, stream, len);
    reseal(copy, len);
    if (memcmp(copy, stream, len) != 0) {
        run(copy, len, plan, &cut);
        FUZZ_ASSERT(cut.err != WIRE_E_CHECKSUM);
    } else {
        FUZZ_ASSERT(whole.err != WIRE_E_CHECKSUM);
    }
    tm_free(copy);

    /* The stream as the body of each type, ending where the input ends. */
    static const uint16_t types[] = {WIRE_T_HELLO,   WIRE_T_AUTH, WIRE_T_RECORDS,     WIRE_T_CHALLENGE, WIRE_T_WELCOME,
                                     WIRE_T_ACK,     WIRE_T_TAG_REQUEST, WIRE_T_STOP, WIRE_T_ERROR,
                                     WIRE_T_RESYNC_REQUEST, WIRE_T_RESYNC_ACK, WIRE_T_RESYNC_SUMS, WIRE_T_RESUME,
                                     WIRE_T_GROUP_PREPARE, WIRE_T_PREPARED, WIRE_T_GROUP_COMMIT, WIRE_T_GROUP_ABORT};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (len <= wire_body_limit(types[i]))
            check_body(types[i], len ? stream : NULL, len);
    return 0;
}
