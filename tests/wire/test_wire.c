/*
 * The frame layer of the agent protocol (wire/wire.h): the header layout
 * against bytes computed here, the body limits of docs/agent-protocol.md, the
 * incremental decoder fed whole, a byte at a time and in random chunks, its
 * one-frame-per-call and buffer-reuse contract, every way a header or a
 * checksum can be bad (and that no allocation follows a length over its
 * limit), the encode helpers, the body reader and the name rule.
 */
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

/* Every type of version 1, with the body limit the protocol document gives. */
static const struct {
    uint16_t type;
    uint32_t limit;
} known[] = {
    {WIRE_T_HELLO, 5128},         {WIRE_T_AUTH, 32},       {WIRE_T_RECORDS, (4u << 20) + (64u << 10)},
    {WIRE_T_CHALLENGE, 288},      {WIRE_T_WELCOME, 82},    {WIRE_T_ACK, 8},
    {WIRE_T_TAG_REQUEST, 272},    {WIRE_T_STOP, 328},      {WIRE_T_ERROR, 258},
    {WIRE_T_RESYNC_REQUEST, 16},  {WIRE_T_RESYNC_ACK, 4},  {WIRE_T_RESYNC_SUMS, 32 + 8 * 4096},
    {WIRE_T_RESUME, 256},         {WIRE_T_PREPARED, 273},  {WIRE_T_GROUP_PREPARE, 77},
    {WIRE_T_GROUP_COMMIT, 8},     {WIRE_T_GROUP_ABORT, 8},
};
#define NKNOWN (sizeof known / sizeof known[0])

/* A header only, with any fields; the checksum covers an empty body. */
static void put_hdr(uint8_t h[WIRE_HDR_LEN], uint16_t type, uint16_t flags, uint32_t body_len)
{
    tm_put16(h, type);
    tm_put16(h + 2, flags);
    tm_put32(h + 4, body_len);
    tm_put64(h + 8, XXH3_64bits(h, 8));
}

/* ---- layout and limits ------------------------------------------------------- */

Test(wire, ack_frame_bytes_match_the_layout)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_ack(&b, 0x0102030405060708ull), 0);
    cr_assert_eq(b.len, WIRE_HDR_LEN + 8);
    static const uint8_t want_head[8] = {0x83, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00};
    static const uint8_t want_body[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    cr_assert(memcmp(b.data, want_head, 8) == 0, "type, flags, body_len are not LE at 0, 2, 4");
    cr_assert(memcmp(b.data + WIRE_HDR_LEN, want_body, 8) == 0);
    /* XXH3-64, seed 0, of header bytes 0..7 then the body, stored LE at 8. */
    uint8_t all[16];
    memcpy(all, want_head, 8);
    memcpy(all + 8, want_body, 8);
    cr_assert_eq(tm_get64(b.data + 8), XXH3_64bits(all, sizeof all));
    wire_buf_free(&b);
}

Test(wire, frame_helpers_write_little_endian)
{
    wire_buf_t b = {0};
    size_t s = wire_frame_begin(&b, WIRE_T_STOP);
    cr_assert_eq(s, 0);
    wire_put_u8(&b, 0xa1);
    wire_put_u16(&b, 0xb2c3);
    wire_put_u32(&b, 0xd4e5f607);
    wire_put_u64(&b, 0x1122334455667788ull);
    wire_put_bytes(&b, "xyz", 3);
    wire_put_bytes(&b, NULL, 0);
    wire_put_str(&b, "hi");
    cr_assert_eq(wire_frame_end(&b, s), 0);
    static const uint8_t want[] = {0xa1, 0xc3, 0xb2, 0x07, 0xf6, 0xe5, 0xd4, 0x88, 0x77, 0x66, 0x55, 0x44,
                                   0x33, 0x22, 0x11, 'x',  'y',  'z',  2,    'h',  'i'};
    cr_assert_eq(b.len, WIRE_HDR_LEN + sizeof want);
    cr_assert(memcmp(b.data + WIRE_HDR_LEN, want, sizeof want) == 0);
    cr_assert_eq(tm_get16(b.data), WIRE_T_STOP);
    cr_assert_eq(tm_get16(b.data + 2), 0);
    cr_assert_eq(tm_get32(b.data + 4), sizeof want);
    cr_assert_eq(tm_get64(b.data + 8), wt_checksum(b.data, want, sizeof want));

    /* A second frame starts where the first ends. */
    size_t s2 = wire_frame_begin(&b, WIRE_T_ACK);
    cr_assert_eq(s2, WIRE_HDR_LEN + sizeof want);
    wire_put_u64(&b, 5);
    cr_assert_eq(wire_frame_end(&b, s2), 0);
    cr_assert_eq(tm_get32(b.data + s2 + 4), 8);
    wire_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    wire_buf_free(&b);
    cr_assert_null(b.data);
}

Test(wire, put_str_cuts_at_255_bytes)
{
    char s[400];
    memset(s, 'q', sizeof s - 1);
    s[sizeof s - 1] = '\0';
    wire_buf_t b = {0};
    wire_put_str(&b, s);
    cr_assert_eq(b.len, 256);
    cr_assert_eq(b.data[0], 255);
    wire_buf_free(&b);
}

Test(wire, frame_end_refuses_a_body_over_the_limit)
{
    wire_buf_t b = {0};
    size_t s = wire_frame_begin(&b, WIRE_T_ACK);
    wire_put_u64(&b, 1);
    wire_put_u8(&b, 0);
    cr_assert_eq(wire_frame_end(&b, s), -1, "9-byte ACK body accepted");
    wire_buf_reset(&b);
    s = wire_frame_begin(&b, WIRE_T_AUTH);
    uint8_t mac[WIRE_MAC_LEN] = {0};
    wire_put_bytes(&b, mac, sizeof mac);
    cr_assert_eq(wire_frame_end(&b, s), 0, "32-byte AUTH body refused");
    wire_buf_free(&b);
}

Test(wire, body_limits_are_the_documented_ones)
{
    for (size_t i = 0; i < NKNOWN; i++)
        cr_assert_eq(wire_body_limit(known[i].type), known[i].limit, "type 0x%x: limit %u, want %u", known[i].type,
                     wire_body_limit(known[i].type), known[i].limit);
    static const uint16_t unknown[] = {0x00, 0x07, 0x7f, 0x80, 0x8b, 0xfe, 0x100, 0x101, 0x183, 0x1ff, 0xffff};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        cr_assert_eq(wire_body_limit(unknown[i]), 0, "type 0x%x has a limit", unknown[i]);
    /* The named limits fit in the records limit: header, 1024 entries, 4 MiB. */
    cr_assert(WIRE_RECORDS_HDR_LEN + WIRE_MAX_BATCH_RECORDS * WIRE_ENTRY_LEN + WIRE_MAX_BATCH_DATA <= WIRE_MAX_BODY);
}

Test(wire, error_names_are_stable)
{
    static const char *names[] = {NULL,       "protocol", "checksum", "too-big",  "unknown-type", "version", "auth",
                                  "busy",     "sequence", "range",    "disks",    "internal",     "stopped"};
    for (int c = 1; c <= 12; c++)
        cr_assert_str_eq(wire_err_name(c), names[c]);
    cr_assert_str_eq(wire_err_name(0), "unknown");
    cr_assert_str_eq(wire_err_name(13), "unknown");
    cr_assert_str_eq(wire_err_name(-1), "unknown");
}

/* ---- the decoder on good input -------------------------------------------- */

/* One frame of each type, back to back. */
static void all_types_stream(wire_buf_t *b, size_t ends[NKNOWN])
{
    size_t k = 0;
    wire_hello_t h = {.version = WIRE_VERSION, .ndisks = 2, .machine = "db-01", .agent_version = "0.1.0"};
    strcpy(h.disks[0].name, "sda");
    h.disks[0].size = 1u << 30;
    strcpy(h.disks[1].name, "sdb");
    h.disks[1].size = 512;
    cr_assert_eq(wire_enc_hello(b, &h), 0);
    ends[k++] = b->len;
    uint8_t mac[WIRE_MAC_LEN];
    for (unsigned i = 0; i < sizeof mac; i++)
        mac[i] = (uint8_t)(i * 7);
    cr_assert_eq(wire_enc_auth(b, mac), 0);
    ends[k++] = b->len;
    uint8_t data[4096];
    tmt_fill(data, sizeof data, 1, 2, true);
    wire_entry_t e[2] = {{.kind = WIRE_R_WRITE, .disk = 1, .length = 4096, .offset = 8192, .data = data},
                         {.kind = WIRE_R_FLUSH}};
    cr_assert_eq(wire_enc_records(b, 9, e, 2, true), 0);
    ends[k++] = b->len;
    wire_challenge_t c = {.server_id = "appliance"};
    memset(c.nonce, 0x5a, sizeof c.nonce);
    cr_assert_eq(wire_enc_challenge(b, &c), 0);
    ends[k++] = b->len;
    wire_welcome_t w = {.next_seq = 9, .window_bytes = 1u << 24, .max_batch_data = 1u << 20, .ndisks = 2,
                        .disk_state = {WIRE_DISK_NEW, WIRE_DISK_SYNCED}};
    cr_assert_eq(wire_enc_welcome(b, &w), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_ack(b, 10), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_tag_request(b, WIRE_TAG_APP, 77, "nightly"), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_stop(b, 12, "final-12", "failover"), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_error(b, WIRE_E_BUSY, "machine db-01 already has a connection"), 0);
    ends[k++] = b->len;
    wire_resync_request_t rq = {.disk = 1, .block_size = 65536, .first_block = 12};
    cr_assert_eq(wire_enc_resync_request(b, &rq), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_resync_ack(b, 1, 2), 0);
    ends[k++] = b->len;
    const uint64_t sums[3] = {1, UINT64_MAX, 0x0123456789abcdefull};
    wire_resync_sums_t rs = {.disk = 1, .flags = WIRE_SUMS_LAST, .block_size = 65536, .seq = 40, .first_block = 12,
                             .count = 3, .sums = sums};
    cr_assert_eq(wire_enc_resync_sums(b, &rs), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_resume(b, "failover cancelled"), 0);
    ends[k++] = b->len;
    wire_prepared_t pr = {.round = 3, .status = WIRE_PREPARED_HELD, .seq = 9};
    cr_assert_eq(wire_enc_prepared(b, &pr), 0);
    ends[k++] = b->len;
    wire_group_prepare_t gp = {.round = 3, .kind = WIRE_TAG_CRASH, .hold_ms = 100, .name = "grp-3"};
    cr_assert_eq(wire_enc_group_prepare(b, &gp), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_group_commit(b, 3), 0);
    ends[k++] = b->len;
    cr_assert_eq(wire_enc_group_abort(b, 4), 0);
    ends[k++] = b->len;
    cr_assert_eq(k, NKNOWN);
}

Test(wire, frames_back_to_back_in_every_feeding)
{
    wire_buf_t b = {0};
    size_t ends[NKNOWN];
    all_types_stream(&b, ends);
    uint64_t seed = wt_seed();
    for (int k = 0; k < 12; k++) {
        wt_feed_t how = k == 0 ? WT_WHOLE : k == 1 ? WT_BYTES : WT_RANDOM;
        uint64_t s = seed + (uint64_t)k;
        wt_run_t run;
        wt_decode_all(b.data, b.len, how, s, &run);
        cr_assert_eq(run.last, WIRE_FRAME, "feed %s seed %llu: %s", wt_feed_name(how), (unsigned long long)s,
                     run.reason);
        cr_assert_eq(run.n, NKNOWN, "feed %s seed %llu: %zu frames", wt_feed_name(how), (unsigned long long)s,
                     run.n);
        size_t start = 0;
        for (size_t i = 0; i < NKNOWN; i++) {
            cr_assert_eq(run.f[i].type, known[i].type, "frame %zu: type 0x%x", i, run.f[i].type);
            cr_assert_eq(run.f[i].end, ends[i], "feed %s seed %llu: frame %zu ends at %zu, want %zu",
                         wt_feed_name(how), (unsigned long long)s, i, run.f[i].end, ends[i]);
            cr_assert_eq(run.f[i].len, ends[i] - start - WIRE_HDR_LEN);
            cr_assert(memcmp(run.f[i].body, b.data + start + WIRE_HDR_LEN, run.f[i].len) == 0);
            char reason[256];
            cr_assert_eq(wt_dec_any(run.f[i].type, run.f[i].body, run.f[i].len, reason, sizeof reason), 0,
                         "frame %zu (type 0x%x): %s", i, run.f[i].type, reason);
            start = ends[i];
        }
        /* Whole: each call hands back exactly one frame. */
        if (how == WT_WHOLE)
            cr_assert_eq(run.calls, NKNOWN);
        if (how == WT_BYTES)
            cr_assert_eq(run.calls, b.len);
        wt_run_free(&run);
    }
    wire_buf_free(&b);
}

Test(wire, one_frame_per_call)
{
    wire_buf_t b = {0};
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(wire_enc_ack(&b, i), 0);
    wire_decoder_t d;
    wire_decoder_init(&d);
    size_t off = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        size_t used = 0;
        cr_assert_eq(wire_decode(&d, b.data + off, b.len - off, &used), WIRE_FRAME);
        cr_assert_eq(used, WIRE_HDR_LEN + 8, "call %llu took %zu bytes", (unsigned long long)i, used);
        cr_assert_eq(d.hdr.type, WIRE_T_ACK);
        cr_assert_eq(d.hdr.flags, 0);
        cr_assert_eq(d.hdr.body_len, 8);
        cr_assert_eq(d.hdr.checksum, tm_get64(b.data + off + 8));
        cr_assert_eq(tm_get64(d.body), i);
        off += used;
    }
    size_t used = 1;
    cr_assert_eq(wire_decode(&d, b.data + off, 0, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, 0);
    wire_decoder_free(&d);
    wire_buf_free(&b);
}

Test(wire, empty_input_is_need_more_anywhere)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, 1, "f", "bye"), 0);
    wire_decoder_t d;
    wire_decoder_init(&d);
    size_t used = 7;
    /* A read callback may hand over nothing (and no buffer). */
    cr_assert_eq(wire_decode(&d, NULL, 0, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, 0);
    cr_assert_eq(wire_decode(&d, b.data, 5, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, 5);
    cr_assert_eq(wire_decode(&d, NULL, 0, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, 0);
    cr_assert_eq(wire_decode(&d, b.data + 5, WIRE_HDR_LEN - 5 + 1, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, WIRE_HDR_LEN - 5 + 1);
    cr_assert_eq(wire_decode(&d, NULL, 0, &used), WIRE_NEED_MORE, "mid-body");
    cr_assert_eq(used, 0);
    cr_assert_eq(wire_decode(&d, b.data + WIRE_HDR_LEN + 1, b.len - WIRE_HDR_LEN - 1, &used), WIRE_FRAME);
    cr_assert_eq(d.hdr.type, WIRE_T_STOP);
    wire_decoder_free(&d);
    wire_buf_free(&b);
}

Test(wire, empty_body_is_a_frame)
{
    wire_buf_t b = {0};
    wt_frame_raw(&b, WIRE_T_STOP, 0, NULL, 0);
    wt_frame_raw(&b, WIRE_T_ACK, 0, NULL, 0);
    wt_run_t run;
    wt_decode_all(b.data, b.len, WT_WHOLE, 0, &run);
    cr_assert_eq(run.n, 2);
    cr_assert_eq(run.f[0].len, 0);
    cr_assert_eq(run.f[1].type, WIRE_T_ACK);
    cr_assert_eq(run.calls, 2);
    wt_run_free(&run);
    wire_buf_free(&b);
}

Test(wire, body_buffer_is_reused)
{
    wt_alloc_install();
    wire_buf_t big = {0}, small = {0}, bigger = {0};
    uint8_t data[8192];
    tmt_fill(data, sizeof data, 3, 4, false);
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = 4096, .data = data};
    cr_assert_eq(wire_enc_records(&big, 1, &e, 1, false), 0);
    cr_assert_eq(wire_enc_ack(&small, 1), 0);
    e.length = 8192;
    cr_assert_eq(wire_enc_records(&bigger, 2, &e, 1, false), 0);

    wire_decoder_t d;
    wire_decoder_init(&d);
    size_t used;
    wt_alloc_reset(-1);
    cr_assert_eq(wire_decode(&d, big.data, big.len, &used), WIRE_FRAME);
    cr_assert_eq(wt_alloc.calls, 1, "%zu allocations for the first frame", wt_alloc.calls);
    cr_assert_eq(wt_alloc.max_size, big.len - WIRE_HDR_LEN, "asked for %zu bytes", wt_alloc.max_size);
    const uint8_t *body = d.body;
    for (int i = 0; i < 3; i++) {
        wt_alloc_reset(-1);
        cr_assert_eq(wire_decode(&d, small.data, small.len, &used), WIRE_FRAME);
        cr_assert_eq(d.body, body, "smaller frame moved the body buffer");
        cr_assert_eq(wt_alloc.calls, 0, "smaller frame allocated");
        cr_assert_eq(wire_decode(&d, big.data, big.len, &used), WIRE_FRAME);
        cr_assert_eq(d.body, body);
        cr_assert_eq(wt_alloc.calls, 0, "same-size frame allocated");
        cr_assert(memcmp(d.body, big.data + WIRE_HDR_LEN, big.len - WIRE_HDR_LEN) == 0);
    }
    wt_alloc_reset(-1);
    cr_assert_eq(wire_decode(&d, bigger.data, bigger.len, &used), WIRE_FRAME);
    cr_assert_eq(wt_alloc.calls, 1, "a larger frame must grow the buffer once");
    cr_assert_eq(wt_alloc.max_size, bigger.len - WIRE_HDR_LEN);
    wire_decoder_free(&d);
    wt_alloc_uninstall();
    wire_buf_free(&big);
    wire_buf_free(&small);
    wire_buf_free(&bigger);
}

/* ---- the decoder on bad input ------------------------------------------------ */

/* Feed hdr (and nothing more) to a fresh decoder, with the counting
 * allocator; returns the status, d left for inspection. */
static wire_status_t feed_hdr(wire_decoder_t *d, const uint8_t hdr[WIRE_HDR_LEN])
{
    wire_decoder_init(d);
    size_t used = 0;
    /* One byte short: nothing is decided before the header is whole. */
    cr_assert_eq(wire_decode(d, hdr, WIRE_HDR_LEN - 1, &used), WIRE_NEED_MORE);
    cr_assert_eq(used, WIRE_HDR_LEN - 1);
    wire_status_t st = wire_decode(d, hdr + WIRE_HDR_LEN - 1, 1, &used);
    cr_assert_eq(used, 1);
    return st;
}

Test(wire, unknown_type_is_refused)
{
    static const uint16_t types[] = {0x00, 0x07, 0x80, 0x8b, 0xfe, 0x101, 0x183, 0xffff};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        uint8_t h[WIRE_HDR_LEN];
        put_hdr(h, types[i], 0, 0xffffffffu);
        wire_decoder_t d;
        wt_alloc_install();
        cr_assert_eq(feed_hdr(&d, h), WIRE_BAD, "type 0x%x accepted", types[i]);
        cr_assert_eq(wt_alloc.calls, 0, "type 0x%x: allocated %zu bytes", types[i], wt_alloc.max_size);
        wt_alloc_uninstall();
        cr_assert_eq(d.err, WIRE_E_UNKNOWN_TYPE, "type 0x%x: %d (%s)", types[i], d.err, d.reason);
        char hex[16];
        snprintf(hex, sizeof hex, "0x%x", types[i]);
        cr_assert(strstr(d.reason, hex), "reason \"%s\" does not name the type", d.reason);
        wire_decoder_free(&d);
    }
}

Test(wire, flags_must_be_zero)
{
    static const uint16_t flags[] = {1, 2, 0x80, 0x8000, 0xffff};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        uint8_t h[WIRE_HDR_LEN];
        put_hdr(h, WIRE_T_ACK, flags[i], 8);
        wire_decoder_t d;
        cr_assert_eq(feed_hdr(&d, h), WIRE_BAD, "flags 0x%x accepted", flags[i]);
        cr_assert_eq(d.err, WIRE_E_PROTOCOL, "flags 0x%x: %d (%s)", flags[i], d.err, d.reason);
        cr_assert(strstr(d.reason, "flags"), "%s", d.reason);
        wire_decoder_free(&d);
    }
}

Test(wire, body_len_over_the_limit_is_refused_before_any_allocation)
{
    wt_alloc_install();
    for (size_t i = 0; i < NKNOWN; i++) {
        const uint32_t over[] = {known[i].limit + 1, known[i].limit + 4096, 1u << 31, 0xffffffffu};
        for (size_t k = 0; k < sizeof over / sizeof over[0]; k++) {
            uint8_t h[WIRE_HDR_LEN];
            put_hdr(h, known[i].type, 0, over[k]);
            wire_decoder_t d;
            wt_alloc_reset(-1);
            cr_assert_eq(feed_hdr(&d, h), WIRE_BAD, "type 0x%x body_len %u accepted", known[i].type, over[k]);
            cr_assert_eq(d.err, WIRE_E_TOO_BIG, "type 0x%x body_len %u: %d (%s)", known[i].type, over[k], d.err,
                         d.reason);
            cr_assert(strstr(d.reason, "limit"), "%s", d.reason);
            cr_assert_eq(wt_alloc.calls, 0, "type 0x%x body_len %u: %zu allocations, largest %zu bytes",
                         known[i].type, over[k], wt_alloc.calls, wt_alloc.max_size);
            wire_decoder_free(&d);
        }
        /* Exactly at the limit: taken, and the buffer is exactly that big. */
        uint8_t h[WIRE_HDR_LEN];
        put_hdr(h, known[i].type, 0, known[i].limit);
        wire_decoder_t d;
        wt_alloc_reset(-1);
        cr_assert_eq(feed_hdr(&d, h), WIRE_NEED_MORE, "type 0x%x: body_len at the limit refused: %s", known[i].type,
                     d.reason);
        cr_assert_eq(wt_alloc.calls, 1);
        cr_assert_eq(wt_alloc.max_size, known[i].limit);
        wire_decoder_free(&d);
    }
    wt_alloc_uninstall();
}

Test(wire, a_decoder_at_its_limit_after_a_big_frame_still_refuses_over_it)
{
    /* A buffer grown by an earlier frame does not widen the limit. */
    wire_buf_t b = {0};
    uint8_t data[4096] = {0};
    wire_entry_t e = {.kind = WIRE_R_WRITE, .length = 4096, .data = data};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, false), 0);
    wire_decoder_t d;
    wire_decoder_init(&d);
    size_t used;
    cr_assert_eq(wire_decode(&d, b.data, b.len, &used), WIRE_FRAME);
    uint8_t h[WIRE_HDR_LEN];
    put_hdr(h, WIRE_T_ACK, 0, 9);
    cr_assert_eq(wire_decode(&d, h, sizeof h, &used), WIRE_BAD);
    cr_assert_eq(d.err, WIRE_E_TOO_BIG);
    wire_decoder_free(&d);
    wire_buf_free(&b);
}

Test(wire, checksum_covers_header_and_body)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_error(&b, WIRE_E_AUTH, "wrong secret"), 0);
    /* Each bit of the checksum, of the body, and a type change that keeps
     * the frame within the other type's limit (ERROR -> STOP). */
    for (size_t byte = 8; byte < b.len; byte++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            uint8_t *copy = malloc(b.len);
            memcpy(copy, b.data, b.len);
            copy[byte] ^= (uint8_t)(1u << bit);
            wt_run_t run;
            wt_decode_all(copy, b.len, WT_RANDOM, byte * 8 + bit, &run);
            cr_assert_eq(run.last, WIRE_BAD, "flip of byte %zu bit %u not caught", byte, bit);
            cr_assert_eq(run.err, WIRE_E_CHECKSUM, "byte %zu bit %u: %d (%s)", byte, bit, run.err, run.reason);
            cr_assert(strstr(run.reason, "checksum"), "%s", run.reason);
            cr_assert_eq(run.n, 0);
            wt_run_free(&run);
            free(copy);
        }
    }
    uint8_t *copy = malloc(b.len);
    memcpy(copy, b.data, b.len);
    tm_put16(copy, WIRE_T_STOP);
    wt_run_t run;
    wt_decode_all(copy, b.len, WT_WHOLE, 0, &run);
    cr_assert_eq(run.err, WIRE_E_CHECKSUM, "a changed type passed the checksum: %d (%s)", run.err, run.reason);
    free(copy);
    wire_buf_free(&b);
}

Test(wire, a_bad_frame_after_good_ones)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_ack(&b, 1), 0);
    cr_assert_eq(wire_enc_ack(&b, 2), 0);
    size_t bad_at = b.len;
    cr_assert_eq(wire_enc_ack(&b, 3), 0);
    b.data[b.len - 1] ^= 0x40;
    cr_assert_eq(wire_enc_ack(&b, 4), 0);
    for (int k = 0; k < 3; k++) {
        wt_run_t run;
        wt_decode_all(b.data, b.len, (wt_feed_t)k, wt_seed() + (uint64_t)k, &run);
        cr_assert_eq(run.n, 2);
        cr_assert_eq(run.last, WIRE_BAD);
        cr_assert_eq(run.err, WIRE_E_CHECKSUM);
        /* Nothing past the bad frame was taken. */
        cr_assert_eq(run.consumed, bad_at + WIRE_HDR_LEN + 8);
        wt_run_free(&run);
    }
    wire_buf_free(&b);
}

Test(wire, a_bad_decoder_stays_bad)
{
    uint8_t h[WIRE_HDR_LEN];
    put_hdr(h, 0x42, 0, 0);
    wire_decoder_t d;
    cr_assert_eq(feed_hdr(&d, h), WIRE_BAD);
    char reason[sizeof d.reason];
    memcpy(reason, d.reason, sizeof reason);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_ack(&b, 1), 0);
    for (int i = 0; i < 3; i++) {
        size_t used = 99;
        cr_assert_eq(wire_decode(&d, b.data, b.len, &used), WIRE_BAD);
        cr_assert_eq(used, 0);
        cr_assert_eq(d.err, WIRE_E_UNKNOWN_TYPE);
        cr_assert_str_eq(d.reason, reason);
    }
    /* free and init give a working decoder again */
    wire_decoder_free(&d);
    wire_decoder_init(&d);
    size_t used;
    cr_assert_eq(wire_decode(&d, b.data, b.len, &used), WIRE_FRAME);
    wire_decoder_free(&d);
    wire_buf_free(&b);
}

Test(wire, a_truncated_frame_is_never_handed_out)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_ack(&b, 1), 0);
    cr_assert_eq(wire_enc_stop(&b, 2, "f", "maintenance window"), 0);
    size_t first = WIRE_HDR_LEN + 8;
    for (size_t cut = first; cut < b.len; cut++) {
        wt_run_t run;
        wt_decode_all(b.data, cut, WT_RANDOM, cut, &run);
        cr_assert_eq(run.n, 1, "cut at %zu", cut);
        cr_assert_eq(run.last, cut == first ? WIRE_FRAME : WIRE_NEED_MORE, "cut at %zu", cut);
        cr_assert_eq(run.consumed, cut);
        wt_run_free(&run);
    }
    wire_buf_free(&b);
}

Test(wire, out_of_memory_for_a_body)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, 3, "f", "x"), 0);
    wt_alloc_install();
    wt_alloc_reset(0);
    wire_decoder_t d;
    wire_decoder_init(&d);
    size_t used;
    cr_assert_eq(wire_decode(&d, b.data, b.len, &used), WIRE_BAD);
    cr_assert_eq(d.err, WIRE_E_INTERNAL, "%d (%s)", d.err, d.reason);
    cr_assert(d.reason[0]);
    wt_alloc_reset(-1);
    cr_assert_eq(wire_decode(&d, b.data, b.len, &used), WIRE_BAD, "stays bad after memory came back");
    wire_decoder_free(&d);
    wt_alloc_uninstall();
    wire_buf_free(&b);
}

Test(wire, encoders_report_out_of_memory)
{
    wt_alloc_install();
    wire_hello_t h = {.version = 1, .ndisks = 1, .machine = "m", .agent_version = "v"};
    strcpy(h.disks[0].name, "d");
    h.disks[0].size = 512;
    wire_challenge_t c = {.server_id = "s"};
    wire_welcome_t w = {.next_seq = 1, .max_batch_data = 1};
    uint8_t mac[WIRE_MAC_LEN] = {0};
    for (int which = 0; which < 10; which++) {
        wire_buf_t b = {0};
        wt_alloc_reset(0);
        int rc = -2;
        uint8_t data[512] = {0};
        wire_entry_t e = {.kind = WIRE_R_WRITE, .length = 512, .data = data};
        switch (which) {
        case 0: rc = wire_enc_hello(&b, &h); break;
        case 1: rc = wire_enc_challenge(&b, &c); break;
        case 2: rc = wire_enc_auth(&b, mac); break;
        case 3: rc = wire_enc_welcome(&b, &w); break;
        case 4: rc = wire_enc_ack(&b, 1); break;
        case 5: rc = wire_enc_tag_request(&b, 1, 1, "t"); break;
        case 6: rc = wire_enc_stop(&b, 4, "f", "s"); break;
        case 7: rc = wire_enc_error(&b, 1, "e"); break;
        case 8: rc = wire_enc_records(&b, 1, &e, 1, false); break;
        case 9: rc = wire_enc_resume(&b, "r"); break;
        }
        cr_assert_eq(rc, -1, "encoder %d: %d without memory", which, rc);
        wt_alloc_reset(-1);
        if (which != 8)
            cr_assert(b.oom, "encoder %d: oom not set", which);
        /* reset clears the condition; the buffer works again */
        wire_buf_reset(&b);
        cr_assert(!b.oom);
        cr_assert_eq(wire_enc_ack(&b, 1), 0);
        wire_buf_free(&b);
    }
    wt_alloc_uninstall();
}

Test(wire, records_encoder_fails_cleanly_at_every_allocation)
{
    /* Each allocation of a compressed records encode (its per-write sizes,
     * the lz4 blocks, the frame buffer) fails in turn; ASan reports a leak on
     * any path that forgets a buffer. */
    uint8_t data[8192];
    tmt_fill(data, sizeof data, 5, 6, true);
    wire_entry_t e[2] = {{.kind = WIRE_R_WRITE, .length = 8192, .data = data},
                         {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH, .length = 3, .id = 1, .data = (const uint8_t *)"abc"}};
    wt_alloc_install();
    for (long n = 0;; n++) {
        wire_buf_t b = {0};
        wt_alloc_reset(n);
        int rc = wire_enc_records(&b, 1, e, 2, true);
        size_t failed = wt_alloc.failed;
        wt_alloc_reset(-1);
        if (failed == 0) {
            cr_assert_eq(rc, 0);
            wire_buf_free(&b);
            cr_assert(n > 1, "only %ld allocations", n);
            break;
        }
        /* A failed allocation makes the encode -1 (the lz4 buffer included:
         * there is no raw fallback); a frame that did go out decodes. */
        if (rc == 0) {
            char reason[128];
            cr_assert_eq(wt_dec_any(WIRE_T_RECORDS, wt_body(&b), wt_body_len(&b), reason, sizeof reason), 0, "%s",
                         reason);
        } else {
            cr_assert_eq(rc, -1);
        }
        wire_buf_free(&b);
        cr_assert(n < 100);
    }
    wt_alloc_uninstall();
}

/* ---- the body reader ----------------------------------------------------------- */

Test(wire, reader_never_reads_past_the_end)
{
    static const uint8_t buf[3] = {1, 2, 3};
    wire_rd_t r;
    wire_rd_init(&r, buf, sizeof buf);
    cr_assert_eq(wire_get_u16(&r), 0x0201);
    cr_assert(!r.bad);
    cr_assert_eq(wire_get_u16(&r), 0, "a read past the end returned data");
    cr_assert(r.bad);
    /* one byte is left, but a bad reader returns zeros from now on */
    cr_assert_eq(wire_get_u8(&r), 0);
    cr_assert_null(wire_get_bytes(&r, 0));
    cr_assert_eq(wire_get_u64(&r), 0);
    cr_assert_eq(wire_get_u32(&r), 0);

    wire_rd_init(&r, buf, sizeof buf);
    cr_assert_not_null(wire_get_bytes(&r, 3));
    cr_assert_eq(r.left, 0);
    cr_assert_not_null(wire_get_bytes(&r, 0), "zero bytes at the end are fine");
    cr_assert(!r.bad);
    cr_assert_null(wire_get_bytes(&r, 1));
    cr_assert(r.bad);
}

Test(wire, reader_strings)
{
    char out[16];
    wire_rd_t r;
    static const uint8_t ok[] = {3, 'a', 'b', 'c', 0};
    wire_rd_init(&r, ok, sizeof ok);
    wire_get_str(&r, out, 3);
    cr_assert(!r.bad);
    cr_assert_str_eq(out, "abc");
    wire_get_str(&r, out, 3);
    cr_assert(!r.bad);
    cr_assert_str_eq(out, "", "a zero-length string");
    cr_assert_eq(r.left, 0);

    wire_rd_init(&r, ok, sizeof ok);
    wire_get_str(&r, out, 2);
    cr_assert(r.bad, "3 bytes accepted with a maximum of 2");

    static const uint8_t nul[] = {3, 'a', 0, 'c'};
    wire_rd_init(&r, nul, sizeof nul);
    wire_get_str(&r, out, 15);
    cr_assert(r.bad, "an embedded NUL accepted");

    static const uint8_t cut[] = {5, 'a', 'b'};
    wire_rd_init(&r, cut, sizeof cut);
    wire_get_str(&r, out, 15);
    cr_assert(r.bad);
    cr_assert_str_eq(out, "");
}

/* ---- names ---------------------------------------------------------------------- */

Test(wire, name_rule)
{
    static const char *good[] = {"a", "A", "0", "_", "db-01", "vm_7.disk", "a.", "a-", "a..b", "Z9_-.", "_hidden"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert(wire_name_ok(good[i]), "\"%s\" refused", good[i]);
    static const char *bad[] = {"",       ".",    "..",   "-",    ".hidden", "-rf", "a/b", "../etc", "a b",
                                "a\tb",   "a:b",  "a\\b", "caf\xc3\xa9", "a\x01", "a*", "a$", "~x", "a,b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!wire_name_ok(bad[i]), "\"%s\" accepted", bad[i]);
    char s[WIRE_MAX_NAME + 2];
    memset(s, 'n', sizeof s);
    s[WIRE_MAX_NAME] = '\0';
    cr_assert(wire_name_ok(s), "63 characters refused");
    s[WIRE_MAX_NAME] = 'n';
    s[WIRE_MAX_NAME + 1] = '\0';
    cr_assert(!wire_name_ok(s), "64 characters accepted");
    /* every byte value on its own and after a letter */
    for (int c = 1; c < 256; c++) {
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                       c == '.' || c == '-';
        char one[2] = {(char)c, 0}, two[3] = {'x', (char)c, 0};
        cr_assert_eq(wire_name_ok(two), allowed, "byte 0x%02x after a letter", c);
        cr_assert_eq(wire_name_ok(one), allowed && c != '.' && c != '-', "byte 0x%02x alone", c);
    }
}
