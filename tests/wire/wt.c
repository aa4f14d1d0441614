/* Helpers for the wire suites; the contracts are in wt.h. */
#include "wt.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/endian.h"
#include "base/mem.h"
#include "support/tmt.h"

/* ---- allocator ----------------------------------------------------------- */

wt_alloc_stats_t wt_alloc = {.fail_from = -1};

static bool wt__may_alloc(size_t size)
{
    long n = (long)wt_alloc.calls++;
    if (size > wt_alloc.max_size)
        wt_alloc.max_size = size;
    if (wt_alloc.fail_from >= 0 && n >= wt_alloc.fail_from) {
        wt_alloc.failed++;
        return false;
    }
    return true;
}

static void *wt__malloc(size_t size)
{
    return wt__may_alloc(size) ? malloc(size) : NULL;
}

static void *wt__realloc(void *p, size_t size)
{
    return wt__may_alloc(size) ? realloc(p, size) : NULL;
}

void wt_alloc_reset(long fail_from)
{
    wt_alloc = (wt_alloc_stats_t){.fail_from = fail_from};
}

void wt_alloc_install(void)
{
    static const tm_allocator_t a = {wt__malloc, wt__realloc, free};
    wt_alloc_reset(-1);
    tm_set_allocator(&a);
}

void wt_alloc_uninstall(void)
{
    tm_set_allocator(NULL);
}

/* ---- feeding the decoder --------------------------------------------------- */

const char *wt_feed_name(wt_feed_t how)
{
    switch (how) {
    case WT_WHOLE: return "whole";
    case WT_BYTES: return "byte at a time";
    case WT_RANDOM: return "random chunks";
    }
    return "?";
}

static size_t wt__chunk(wt_feed_t how, tmt_rng_t *rng, size_t left)
{
    size_t n = left;
    if (how == WT_BYTES)
        n = 1;
    else if (how == WT_RANDOM) {
        /* Mostly small pieces (split headers), sometimes large ones. */
        switch (tmt_rng_next(rng) % 4) {
        case 0: n = (size_t)tmt_rng_range(rng, 1, 3); break;
        case 1: n = (size_t)tmt_rng_range(rng, 1, 17); break;
        case 2: n = (size_t)tmt_rng_range(rng, 1, 700); break;
        default: n = (size_t)tmt_rng_range(rng, 1, left); break;
        }
    }
    return n < left ? n : left;
}

void wt_decode_all(const uint8_t *buf, size_t len, wt_feed_t how, uint64_t seed, wt_run_t *out)
{
    memset(out, 0, sizeof *out);
    out->last = WIRE_NEED_MORE;
    wire_decoder_t d;
    wire_decoder_init(&d);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, seed);
    size_t off = 0, chunk_end = 0;
    while (off < len) {
        if (off == chunk_end)
            chunk_end = off + wt__chunk(how, &rng, len - off);
        size_t n = chunk_end - off;
        size_t used = (size_t)-1;
        wire_status_t st = wire_decode(&d, buf + off, n, &used);
        out->calls++;
        cr_assert(used <= n, "feed %s seed %llu: used %zu of %zu bytes", wt_feed_name(how),
                  (unsigned long long)seed, used, n);
        off += used;
        out->consumed += used;
        out->last = st;
        if (st == WIRE_NEED_MORE) {
            cr_assert_eq(used, n, "feed %s seed %llu: NEED_MORE after taking %zu of %zu bytes", wt_feed_name(how),
                         (unsigned long long)seed, used, n);
            continue;
        }
        if (st == WIRE_FRAME) {
            cr_assert(out->n < WT_MAX_FRAMES);
            wt_frame_t *f = &out->f[out->n++];
            f->type = d.hdr.type;
            f->len = d.hdr.body_len;
            cr_assert(f->len <= wire_body_limit(f->type));
            /* Plain malloc: tests count the codec's allocations. */
            f->body = malloc(f->len ? f->len : 1);
            cr_assert_not_null(f->body);
            if (f->len)
                memcpy(f->body, d.body, f->len);
            f->dec_body = d.body;
            f->end = off;
            continue;
        }
        cr_assert_eq(st, WIRE_BAD, "wire_decode returned %d", (int)st);
        out->err = d.err;
        memcpy(out->reason, d.reason, sizeof out->reason);
        cr_assert(d.err > 0, "bad without an error code");
        cr_assert(d.reason[0] != '\0', "bad without a reason");
        /* Bad stays bad, whatever comes next; nothing more is taken. */
        static const uint8_t more[WIRE_HDR_LEN + 8] = {WIRE_T_ACK};
        for (int k = 0; k < 2; k++) {
            const uint8_t *p = off < len && k == 0 ? buf + off : more;
            size_t m = off < len && k == 0 ? len - off : sizeof more;
            used = (size_t)-1;
            cr_assert_eq(wire_decode(&d, p, m, &used), WIRE_BAD, "a bad decoder came back");
            cr_assert_eq(used, 0, "a bad decoder took %zu bytes", used);
            cr_assert_eq(d.err, out->err);
            cr_assert_str_eq(d.reason, out->reason);
        }
        break;
    }
    wire_decoder_free(&d);
}

void wt_run_free(wt_run_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->f[i].body);
    r->n = 0;
}

void wt_roundtrip(const wire_buf_t *b, uint16_t type, wt_check_fn check, void *arg)
{
    cr_assert(!b->oom && b->len >= WIRE_HDR_LEN);
    uint64_t seed = wt_seed();
    for (int k = 0; k < 6; k++) {
        wt_feed_t how = k == 0 ? WT_WHOLE : k == 1 ? WT_BYTES : WT_RANDOM;
        uint64_t s = seed + (uint64_t)k;
        wt_run_t run;
        wt_decode_all(b->data, b->len, how, s, &run);
        cr_assert_eq(run.last, WIRE_FRAME, "feed %s seed %llu: ended in state %d (%s)", wt_feed_name(how),
                     (unsigned long long)s, (int)run.last, run.reason);
        cr_assert_eq(run.n, 1);
        cr_assert_eq(run.consumed, b->len);
        cr_assert_eq(run.f[0].end, b->len);
        cr_assert_eq(run.f[0].type, type, "type 0x%x, want 0x%x", run.f[0].type, type);
        cr_assert_eq(run.f[0].len, b->len - WIRE_HDR_LEN);
        cr_assert(memcmp(run.f[0].body, b->data + WIRE_HDR_LEN, run.f[0].len) == 0);
        if (how == WT_BYTES)
            cr_assert_eq(run.calls, b->len, "a byte at a time: %zu calls for %zu bytes", run.calls, b->len);
        if (how == WT_WHOLE)
            cr_assert_eq(run.calls, 1);
        if (check)
            check(run.f[0].body, run.f[0].len, arg);
        wt_run_free(&run);
    }
}

/* ---- frames by hand -------------------------------------------------------- */

uint64_t wt_checksum(const uint8_t *hdr8, const uint8_t *body, size_t len)
{
    uint8_t *all = malloc(8 + len);
    cr_assert_not_null(all);
    memcpy(all, hdr8, 8);
    if (len)
        memcpy(all + 8, body, len);
    uint64_t h = XXH3_64bits(all, 8 + len);
    free(all);
    return h;
}

void wt_frame_raw(wire_buf_t *b, uint16_t type, uint16_t flags, const void *body, size_t len)
{
    uint8_t h[WIRE_HDR_LEN];
    tm_put16(h, type);
    tm_put16(h + 2, flags);
    tm_put32(h + 4, (uint32_t)len);
    tm_put64(h + 8, wt_checksum(h, body, len));
    wire_put_bytes(b, h, sizeof h);
    wire_put_bytes(b, body, len);
    cr_assert(!b->oom);
}

void wt_reseal(uint8_t *p)
{
    tm_put64(p + 8, wt_checksum(p, p + WIRE_HDR_LEN, tm_get32(p + 4)));
}

/* ---- bodies ------------------------------------------------------------------ */

wire_records_t *wt_records;
uint8_t *wt_scratch;

int wt_dec_any(uint16_t type, const uint8_t *body, size_t len, char *reason, size_t rlen)
{
    static wire_hello_t hello;
    static wire_challenge_t ch;
    static wire_welcome_t wel;
    static wire_error_t er;
    uint8_t mac[WIRE_MAC_LEN];
    uint64_t u64;
    uint8_t kind;
    char name[WIRE_MAX_NAME + 1];
    char text[WIRE_MAX_TEXT + 1];
    reason[0] = '\0';
    switch (type) {
    case WIRE_T_HELLO: return wire_dec_hello(body, len, &hello, reason, rlen);
    case WIRE_T_AUTH: return wire_dec_auth(body, len, mac, reason, rlen);
    case WIRE_T_RECORDS:
        if (!wt_records) {
            wt_records = malloc(sizeof *wt_records);
            wt_scratch = malloc(WIRE_MAX_BATCH_DATA);
            cr_assert(wt_records && wt_scratch);
        }
        return wire_dec_records(body, len, wt_records, wt_scratch, reason, rlen);
    case WIRE_T_CHALLENGE: return wire_dec_challenge(body, len, &ch, reason, rlen);
    case WIRE_T_WELCOME: return wire_dec_welcome(body, len, &wel, reason, rlen);
    case WIRE_T_ACK: return wire_dec_ack(body, len, &u64, reason, rlen);
    case WIRE_T_TAG_REQUEST: return wire_dec_tag_request(body, len, &kind, &u64, name, reason, rlen);
    case WIRE_T_STOP: {
        wire_stop_t st;
        return wire_dec_stop(body, len, &st, reason, rlen);
    }
    case WIRE_T_RESUME: return wire_dec_resume(body, len, text, reason, rlen);
    case WIRE_T_ERROR: return wire_dec_error(body, len, &er, reason, rlen);
    case WIRE_T_RESYNC_REQUEST: {
        wire_resync_request_t q;
        return wire_dec_resync_request(body, len, &q, reason, rlen);
    }
    case WIRE_T_RESYNC_ACK: {
        uint16_t disk, frames;
        return wire_dec_resync_ack(body, len, &disk, &frames, reason, rlen);
    }
    case WIRE_T_RESYNC_SUMS: {
        wire_resync_sums_t m;
        return wire_dec_resync_sums(body, len, &m, reason, rlen);
    }
    case WIRE_T_GROUP_PREPARE: {
        wire_group_prepare_t m;
        return wire_dec_group_prepare(body, len, &m, reason, rlen);
    }
    case WIRE_T_PREPARED: {
        wire_prepared_t m;
        return wire_dec_prepared(body, len, &m, reason, rlen);
    }
    case WIRE_T_GROUP_COMMIT: return wire_dec_group_commit(body, len, &u64, reason, rlen);
    case WIRE_T_GROUP_ABORT: return wire_dec_group_abort(body, len, &u64, reason, rlen);
    }
    cr_assert_fail("wt_dec_any: no decoder for type 0x%x", type);
    return -1;
}

uint64_t wt_seed(void)
{
    return tmt_env_u64("TIDEMARK_WIRE_SEED", 0x77697265u);
}
