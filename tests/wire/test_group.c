/*
 * The group round frames (wire/msg.h, docs/agent-protocol.md "Group
 * rounds"): GROUP_PREPARE, PREPARED, GROUP_COMMIT and GROUP_ABORT come back
 * field for field through the decoder in every feeding, at their limits;
 * their bytes are the documented layout; every field out of its range is
 * refused by the decoder with the protocol's code and a reason, and never
 * made by the encoder; the frame limits hold the largest bodies and refuse
 * one byte more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "base/endian.h"
#include "wire/msg.h"
#include "wire/wire.h"
#include "wt.h"

static char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

static const char *const bad_names[] = {"", ".", "..", ".hidden", "-x", "a/b", "a b", "x:y", "caf\xc3\xa9", "a*"};
#define NBAD (sizeof bad_names / sizeof bad_names[0])

/* ---- GROUP_PREPARE ---------------------------------------------------------------- */

static void check_prepare(const uint8_t *body, size_t len, void *arg)
{
    const wire_group_prepare_t *want = arg;
    wire_group_prepare_t got;
    memset(&got, 0xee, sizeof got);
    char reason[256] = "";
    cr_assert_eq(wire_dec_group_prepare(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.round, want->round);
    cr_assert_eq(got.kind, want->kind);
    cr_assert_eq(got.hold_ms, want->hold_ms);
    cr_assert_str_eq(got.name, want->name);
}

Test(group_prepare, roundtrip_at_the_limits)
{
    char n[WIRE_MAX_NAME + 1];
    wire_group_prepare_t m[] = {
        {.round = 1, .kind = WIRE_TAG_CRASH, .hold_ms = 1, .name = "g"},
        {.round = 77, .kind = WIRE_TAG_APP, .hold_ms = 100, .name = "grp-77.app_x"},
        {.round = UINT64_MAX, .kind = WIRE_TAG_CRASH, .hold_ms = WIRE_GROUP_MAX_HOLD_MS},
    };
    snprintf(m[2].name, sizeof m[2].name, "%s", repeat(n, 'g', WIRE_MAX_NAME));
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_group_prepare(&b, &m[i]), 0);
        cr_assert_eq(tm_get16(b.data), 0x88);
        cr_assert_leq(wt_body_len(&b), wire_body_limit(WIRE_T_GROUP_PREPARE));
        wt_roundtrip(&b, WIRE_T_GROUP_PREPARE, check_prepare, &m[i]);
        wire_buf_free(&b);
    }
    /* the longest name is the limit exactly */
    cr_assert_eq(wire_body_limit(WIRE_T_GROUP_PREPARE), 8 + 1 + 4 + 1 + WIRE_MAX_NAME);
}

Test(group_prepare, layout_is_round_kind_hold_name)
{
    wire_group_prepare_t m = {.round = 0x0102030405060708ull, .kind = 2, .hold_ms = 60000, .name = "ab"};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_group_prepare(&b, &m), 0);
    static const uint8_t want[] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 2, 0x60, 0xea, 0x00, 0x00, 2,
                                   'a',  'b'};
    cr_assert_eq(wt_body_len(&b), sizeof want);
    cr_assert(memcmp(wt_body(&b), want, sizeof want) == 0);
    wire_buf_free(&b);
}

/* A body built by hand, past the encoder's checks. */
static void prepare_raw(wire_buf_t *b, uint64_t round, uint8_t kind, uint32_t hold, const char *name)
{
    size_t f = wire_frame_begin(b, WIRE_T_GROUP_PREPARE);
    wire_put_u64(b, round);
    wire_put_u8(b, kind);
    wire_put_u32(b, hold);
    wire_put_str(b, name);
    cr_assert_eq(wire_frame_end(b, f), 0);
}

Test(group_prepare, fields_out_of_range_are_refused_and_never_encoded)
{
    struct {
        uint64_t round;
        uint8_t kind;
        uint32_t hold;
        int code;
        const char *has;
    } bad[] = {
        {0, WIRE_TAG_CRASH, 100, WIRE_E_PROTOCOL, "round"},
        {1, 0, 100, WIRE_E_PROTOCOL, "kind"},
        {1, WIRE_TAG_GROUP, 100, WIRE_E_PROTOCOL, "kind"},
        {1, 0xff, 100, WIRE_E_PROTOCOL, "kind"},
        {1, WIRE_TAG_CRASH, 0, WIRE_E_RANGE, "hold"},
        {1, WIRE_TAG_APP, WIRE_GROUP_MAX_HOLD_MS + 1, WIRE_E_RANGE, "hold"},
        {1, WIRE_TAG_APP, UINT32_MAX, WIRE_E_RANGE, "hold"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_buf_t b = {0};
        wire_group_prepare_t m = {.round = bad[i].round, .kind = bad[i].kind, .hold_ms = bad[i].hold, .name = "g"};
        cr_assert_eq(wire_enc_group_prepare(&b, &m), -1, "case %zu encoded", i);
        cr_assert_eq(b.len, 0);
        prepare_raw(&b, bad[i].round, bad[i].kind, bad[i].hold, "g");
        wt_expect(WIRE_T_GROUP_PREPARE, wt_body(&b), wt_body_len(&b), bad[i].code, bad[i].has);
        wire_buf_free(&b);
    }
}

/* The name becomes the group tag record's: only names pass. */
Test(group_prepare, name_rule)
{
    char n[WIRE_MAX_NAME + 2];
    for (size_t i = 0; i < NBAD + 1; i++) {
        const char *name = i < NBAD ? bad_names[i] : repeat(n, 'g', WIRE_MAX_NAME + 1);
        wire_group_prepare_t m = {.round = 1, .kind = WIRE_TAG_CRASH, .hold_ms = 100};
        wire_buf_t b = {0};
        if (strlen(name) <= WIRE_MAX_NAME) {
            memcpy(m.name, name, strlen(name) + 1);
            cr_assert_eq(wire_enc_group_prepare(&b, &m), -1, "name '%s' encoded", name);
        }
        /* the body by hand: one name byte over the limit is over the
         * frame's limit too, and the body decoder must still refuse it */
        uint8_t body[8 + 1 + 4 + 1 + WIRE_MAX_NAME + 1];
        size_t nl = strlen(name);
        memset(body, 0, 13);
        body[0] = 1;
        body[8] = WIRE_TAG_CRASH;
        body[9] = 100;
        body[13] = (uint8_t)nl;
        memcpy(body + 14, name, nl);
        wt_expect(WIRE_T_GROUP_PREPARE, body, 14 + nl, WIRE_E_PROTOCOL, NULL);
        wire_buf_free(&b);
    }
    /* a NUL inside the name */
    static const uint8_t nul[] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 100, 0, 0, 0, 3, 'a', 0, 'b'};
    wt_expect(WIRE_T_GROUP_PREPARE, nul, sizeof nul, WIRE_E_PROTOCOL, NULL);
}

/* ---- PREPARED ---------------------------------------------------------------------- */

static void check_prepared(const uint8_t *body, size_t len, void *arg)
{
    const wire_prepared_t *want = arg;
    wire_prepared_t got;
    memset(&got, 0xee, sizeof got);
    char reason[256] = "";
    cr_assert_eq(wire_dec_prepared(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.round, want->round);
    cr_assert_eq(got.status, want->status);
    cr_assert_eq(got.seq, want->seq);
    cr_assert_str_eq(got.reason, want->reason);
}

Test(prepared, roundtrip_held_and_failed_at_the_limits)
{
    char t[WIRE_MAX_TEXT + 1];
    wire_prepared_t m[] = {
        {.round = 1, .status = WIRE_PREPARED_HELD, .seq = 0},
        {.round = 9, .status = WIRE_PREPARED_HELD, .seq = 123456},
        {.round = UINT64_MAX, .status = WIRE_PREPARED_HELD, .seq = UINT64_MAX},
        {.round = 2, .status = WIRE_PREPARED_FAILED, .reason = "stopped"},
        {.round = UINT64_MAX, .status = WIRE_PREPARED_FAILED},
    };
    snprintf(m[4].reason, sizeof m[4].reason, "%s", repeat(t, 'r', WIRE_MAX_TEXT));
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_prepared(&b, &m[i]), 0, "case %zu", i);
        cr_assert_eq(tm_get16(b.data), 0x06);
        wt_roundtrip(&b, WIRE_T_PREPARED, check_prepared, &m[i]);
        if (i == 4)
            cr_assert_eq(wt_body_len(&b), wire_body_limit(WIRE_T_PREPARED), "the longest body is the limit");
        wire_buf_free(&b);
    }
}

Test(prepared, layout_is_round_status_seq_reason)
{
    wire_prepared_t m = {.round = 5, .status = WIRE_PREPARED_FAILED, .reason = "why"};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_prepared(&b, &m), 0);
    static const uint8_t want[] = {5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'w', 'h', 'y'};
    cr_assert_eq(wt_body_len(&b), sizeof want);
    cr_assert(memcmp(wt_body(&b), want, sizeof want) == 0);
    wire_buf_free(&b);
}

static void prepared_raw(wire_buf_t *b, uint64_t round, uint8_t status, uint64_t seq, const char *reason)
{
    size_t f = wire_frame_begin(b, WIRE_T_PREPARED);
    wire_put_u64(b, round);
    wire_put_u8(b, status);
    wire_put_u64(b, seq);
    wire_put_str(b, reason);
    cr_assert_eq(wire_frame_end(b, f), 0);
}

/* One meaning per body: round 0, an undefined status, a held round with a
 * reason, a failed one with a position or without a reason. */
Test(prepared, bodies_that_mean_two_things_are_refused_and_never_encoded)
{
    struct {
        uint64_t round;
        uint8_t status;
        uint64_t seq;
        const char *reason;
        const char *has;
    } bad[] = {
        {0, WIRE_PREPARED_HELD, 5, "", "round"},
        {1, 2, 0, "x", "status"},
        {1, 0xff, 0, "x", "status"},
        {1, WIRE_PREPARED_HELD, 5, "but why", "reason"},
        {1, WIRE_PREPARED_FAILED, 5, "a reason", "seq"},
        {1, WIRE_PREPARED_FAILED, 0, "", "reason"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_prepared_t m = {.round = bad[i].round, .status = bad[i].status, .seq = bad[i].seq};
        snprintf(m.reason, sizeof m.reason, "%s", bad[i].reason);
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_prepared(&b, &m), -1, "case %zu encoded", i);
        cr_assert_eq(b.len, 0);
        prepared_raw(&b, bad[i].round, bad[i].status, bad[i].seq, bad[i].reason);
        wt_expect(WIRE_T_PREPARED, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, bad[i].has);
        wire_buf_free(&b);
    }
    /* a NUL in the reason, and a length past the body */
    static const uint8_t nul[] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 0, 'b'};
    wt_expect(WIRE_T_PREPARED, nul, sizeof nul, WIRE_E_PROTOCOL, NULL);
    static const uint8_t past[] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 'a'};
    wt_expect(WIRE_T_PREPARED, past, sizeof past, WIRE_E_PROTOCOL, NULL);
}

/* ---- GROUP_COMMIT, GROUP_ABORT -------------------------------------------------------- */

struct round_want {
    uint16_t type;
    uint64_t round;
};

static void check_round(const uint8_t *body, size_t len, void *arg)
{
    const struct round_want *want = arg;
    uint64_t round = 0;
    char reason[256] = "";
    int rc = want->type == WIRE_T_GROUP_COMMIT ? wire_dec_group_commit(body, len, &round, reason, sizeof reason)
                                               : wire_dec_group_abort(body, len, &round, reason, sizeof reason);
    cr_assert_eq(rc, 0, "%s", reason);
    cr_assert_eq(round, want->round);
}

Test(group_decision, commit_and_abort_roundtrip_and_layout)
{
    static const uint64_t rounds[] = {1, 2, 0x0102030405060708ull, UINT64_MAX};
    for (int commit = 0; commit < 2; commit++) {
        for (size_t i = 0; i < sizeof rounds / sizeof rounds[0]; i++) {
            wire_buf_t b = {0};
            struct round_want w = {commit ? WIRE_T_GROUP_COMMIT : WIRE_T_GROUP_ABORT, rounds[i]};
            cr_assert_eq(commit ? wire_enc_group_commit(&b, rounds[i]) : wire_enc_group_abort(&b, rounds[i]), 0);
            cr_assert_eq(tm_get16(b.data), commit ? 0x89 : 0x8a);
            cr_assert_eq(wt_body_len(&b), 8);
            cr_assert_eq(tm_get64(wt_body(&b)), rounds[i]);
            wt_roundtrip(&b, w.type, check_round, &w);
            wire_buf_free(&b);
        }
    }
}

Test(group_decision, round_zero_and_other_lengths_are_refused)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_group_commit(&b, 0), -1);
    cr_assert_eq(wire_enc_group_abort(&b, 0), -1);
    cr_assert_eq(b.len, 0);
    static const uint8_t zero[8] = {0};
    wt_expect(WIRE_T_GROUP_COMMIT, zero, sizeof zero, WIRE_E_PROTOCOL, "round");
    wt_expect(WIRE_T_GROUP_ABORT, zero, sizeof zero, WIRE_E_PROTOCOL, "round");
    static const uint8_t nine[9] = {1};
    wt_expect(WIRE_T_GROUP_COMMIT, nine, 7, WIRE_E_PROTOCOL, NULL);
    wt_expect(WIRE_T_GROUP_ABORT, nine, sizeof nine, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

/* ---- frame limits ---------------------------------------------------------------------- */

/* The decoder refuses a frame header whose body is over its type's limit
 * before taking a byte of the body; a body at the limit passes. */
Test(group_frames, body_limits_are_checked_in_the_header)
{
    static const uint16_t types[] = {WIRE_T_GROUP_PREPARE, WIRE_T_PREPARED, WIRE_T_GROUP_COMMIT, WIRE_T_GROUP_ABORT};
    static const uint32_t limits[] = {77, 273, 8, 8};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        cr_assert_eq(wire_body_limit(types[i]), limits[i], "type 0x%x", types[i]);
        uint8_t *body = calloc(1, limits[i] + 1);
        for (uint32_t extra = 0; extra <= 1; extra++) {
            wire_buf_t b = {0};
            wt_frame_raw(&b, types[i], 0, body, limits[i] + extra);
            wt_run_t r;
            wt_decode_all(b.data, b.len, WT_WHOLE, 1, &r);
            if (extra) {
                cr_assert_eq(r.last, WIRE_BAD);
                cr_assert_eq(r.err, WIRE_E_TOO_BIG);
                cr_assert_eq(r.consumed, WIRE_HDR_LEN, "the body was taken");
            } else {
                cr_assert_eq(r.n, 1);
                cr_assert_eq(r.f[0].len, limits[i]);
            }
            wt_run_free(&r);
            wire_buf_free(&b);
        }
        free(body);
    }
}

/* A coordinator's round as the wire sees it, back to back: prepare, the
 * answer, the decision, in seeded random pieces. */
Test(group_frames, a_round_in_one_stream)
{
    wire_buf_t b = {0};
    wire_group_prepare_t p = {.round = 3, .kind = WIRE_TAG_CRASH, .hold_ms = 100, .name = "grp-3"};
    wire_prepared_t h = {.round = 3, .status = WIRE_PREPARED_HELD, .seq = 41};
    cr_assert_eq(wire_enc_group_prepare(&b, &p), 0);
    cr_assert_eq(wire_enc_prepared(&b, &h), 0);
    cr_assert_eq(wire_enc_group_commit(&b, 3), 0);
    cr_assert_eq(wire_enc_group_abort(&b, 4), 0);
    static const uint16_t want[] = {WIRE_T_GROUP_PREPARE, WIRE_T_PREPARED, WIRE_T_GROUP_COMMIT, WIRE_T_GROUP_ABORT};
    for (int how = WT_WHOLE; how <= WT_RANDOM; how++) {
        wt_run_t r;
        wt_decode_all(b.data, b.len, (wt_feed_t)how, wt_seed(), &r);
        cr_assert_eq(r.n, 4, "%s", wt_feed_name((wt_feed_t)how));
        cr_assert_eq(r.last, WIRE_FRAME);
        for (size_t i = 0; i < 4; i++) {
            cr_assert_eq(r.f[i].type, want[i]);
            char reason[256];
            cr_assert_eq(wt_dec_any(r.f[i].type, r.f[i].body, r.f[i].len, reason, sizeof reason), 0, "%s", reason);
        }
        wt_run_free(&r);
    }
    wire_buf_free(&b);
}
