/*
 * The typed bodies of the agent protocol other than RECORDS (wire/msg.h):
 * each encoder's frame goes through the decoder in every feeding and comes
 * back field for field; then each field is broken in turn, and the decoder
 * must refuse it with the protocol's code and a reason. Truncated bodies and
 * trailing bytes are refused for every type.
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

/* ---- HELLO ------------------------------------------------------------------- */

static wire_hello_t sample_hello(unsigned ndisks)
{
    wire_hello_t h = {.version = WIRE_VERSION, .ndisks = (uint16_t)ndisks, .machine = "web-3.prod",
                      .agent_version = "tidemark-agent 0.1.0 (debian)"};
    for (unsigned i = 0; i < ndisks; i++) {
        snprintf(h.disks[i].name, sizeof h.disks[i].name, "disk_%u", i);
        h.disks[i].size = (uint64_t)(i + 1) * WIRE_SECTOR * 2049;
    }
    return h;
}

static void check_hello(const uint8_t *body, size_t len, void *arg)
{
    const wire_hello_t *want = arg;
    wire_hello_t got;
    memset(&got, 0xee, sizeof got);
    char reason[256] = "";
    cr_assert_eq(wire_dec_hello(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.version, want->version);
    cr_assert_eq(got.ndisks, want->ndisks);
    cr_assert_str_eq(got.machine, want->machine);
    cr_assert_str_eq(got.agent_version, want->agent_version);
    for (unsigned i = 0; i < want->ndisks; i++) {
        cr_assert_str_eq(got.disks[i].name, want->disks[i].name);
        cr_assert_eq(got.disks[i].size, want->disks[i].size, "disk %u", i);
    }
}

Test(hello, roundtrip)
{
    static const unsigned counts[] = {1, 2, 17, WIRE_MAX_DISKS};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        wire_hello_t h = sample_hello(counts[k]);
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_hello(&b, &h), 0);
        wt_roundtrip(&b, WIRE_T_HELLO, check_hello, &h);
        wire_buf_free(&b);
    }
}

Test(hello, roundtrip_at_every_length_limit)
{
    /* 64 disks, every name 63 characters, a 255-byte agent version: the
     * largest hello there is, and within the frame limit. */
    wire_hello_t h = sample_hello(WIRE_MAX_DISKS);
    repeat(h.machine, 'm', WIRE_MAX_NAME);
    repeat(h.agent_version, 'v', WIRE_MAX_TEXT);
    h.agent_version[0] = ' '; /* versions are text, not names */
    for (unsigned i = 0; i < WIRE_MAX_DISKS; i++) {
        repeat(h.disks[i].name, 'd', WIRE_MAX_NAME);
        h.disks[i].name[0] = (char)('A' + i % 26);
        h.disks[i].name[1] = (char)('a' + i / 26);
    }
    h.disks[0].size = WIRE_SECTOR;
    h.disks[1].size = (uint64_t)INT64_MAX - (WIRE_SECTOR - 1);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_hello(&b, &h), 0);
    cr_assert_leq(wt_body_len(&b), wire_body_limit(WIRE_T_HELLO));
    wt_roundtrip(&b, WIRE_T_HELLO, check_hello, &h);
    wire_buf_free(&b);
}

/* A hello body from raw parts, so fields the struct cannot hold (names of
 * 64 bytes, 65 disks) can be sent. */
static void hello_raw(wire_buf_t *b, uint16_t version, uint16_t ndisks, uint32_t flags, const char *machine,
                      const char *agent, unsigned n, const char *const names[], const uint64_t sizes[])
{
    wire_buf_reset(b);
    wire_put_u16(b, version);
    wire_put_u16(b, ndisks);
    wire_put_u32(b, flags);
    wire_put_str(b, machine);
    wire_put_str(b, agent);
    for (unsigned i = 0; i < n; i++) {
        wire_put_str(b, names[i]);
        wire_put_u64(b, sizes[i]);
    }
    cr_assert(!b->oom);
}

static const char *const two_names[] = {"sda", "sdb"};
static const uint64_t two_sizes[] = {1u << 20, 4096};

Test(hello, raw_builder_matches_the_encoder)
{
    wire_hello_t h = {.version = 1, .ndisks = 2, .machine = "m1", .agent_version = "v"};
    strcpy(h.disks[0].name, "sda");
    h.disks[0].size = 1u << 20;
    strcpy(h.disks[1].name, "sdb");
    h.disks[1].size = 4096;
    wire_buf_t e = {0}, r = {0};
    cr_assert_eq(wire_enc_hello(&e, &h), 0);
    hello_raw(&r, 1, 2, 0, "m1", "v", 2, two_names, two_sizes);
    cr_assert_eq(r.len, wt_body_len(&e));
    cr_assert(memcmp(r.data, wt_body(&e), r.len) == 0);
    wt_expect(WIRE_T_HELLO, r.data, r.len, 0, NULL);
    wire_buf_free(&e);
    wire_buf_free(&r);
}

Test(hello, other_versions_are_refused)
{
    static const uint16_t versions[] = {0, 2, 0x100, 0xffff};
    wire_buf_t b = {0};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        hello_raw(&b, versions[i], 2, 0, "m1", "v", 2, two_names, two_sizes);
        wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_VERSION, "version");
    }
    /* A later version may change the layout: the version alone decides. */
    hello_raw(&b, 2, 0, 0xffffffffu, "", "", 0, NULL, NULL);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_VERSION, NULL);
    wire_buf_free(&b);
}

Test(hello, flags_must_be_zero)
{
    wire_buf_t b = {0};
    hello_raw(&b, 1, 2, 1, "m1", "v", 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, "flags");
    hello_raw(&b, 1, 2, 0x80000000u, "m1", "v", 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, "flags");
    wire_buf_free(&b);
}

Test(hello, disk_count_1_to_64)
{
    const char *names[WIRE_MAX_DISKS + 1];
    uint64_t sizes[WIRE_MAX_DISKS + 1];
    char store[WIRE_MAX_DISKS + 1][8];
    for (unsigned i = 0; i <= WIRE_MAX_DISKS; i++) {
        snprintf(store[i], sizeof store[i], "d%u", i);
        names[i] = store[i];
        sizes[i] = WIRE_SECTOR;
    }
    wire_buf_t b = {0};
    hello_raw(&b, 1, 0, 0, "m1", "v", 0, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_TOO_BIG, "disks");
    hello_raw(&b, 1, 1, 0, "m1", "v", 1, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    hello_raw(&b, 1, WIRE_MAX_DISKS, 0, "m1", "v", WIRE_MAX_DISKS, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    hello_raw(&b, 1, WIRE_MAX_DISKS + 1, 0, "m1", "v", WIRE_MAX_DISKS + 1, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_TOO_BIG, "disks");
    hello_raw(&b, 1, 0xffff, 0, "m1", "v", 1, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_TOO_BIG, "disks");
    /* more or fewer disks than the count says */
    hello_raw(&b, 1, 2, 0, "m1", "v", 3, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    hello_raw(&b, 1, 3, 0, "m1", "v", 2, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);

    /* The encoder will not send more than 64 either. */
    wire_hello_t h = sample_hello(WIRE_MAX_DISKS);
    h.ndisks = WIRE_MAX_DISKS + 1;
    wire_buf_t e = {0};
    cr_assert_eq(wire_enc_hello(&e, &h), -1);
    wire_buf_free(&e);
}

static const char *const bad_names[] = {"", ".", "..", ".hidden", "-x", "a/b", "../x", "a b", "a\tb", "x:y",
                                        "caf\xc3\xa9", "a\x7f", "a*"};
#define NBAD (sizeof bad_names / sizeof bad_names[0])

Test(hello, machine_name_rule)
{
    wire_buf_t b = {0};
    for (size_t i = 0; i < NBAD; i++) {
        hello_raw(&b, 1, 2, 0, bad_names[i], "v", 2, two_names, two_sizes);
        wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    }
    char n[WIRE_MAX_NAME + 2];
    hello_raw(&b, 1, 2, 0, repeat(n, 'm', WIRE_MAX_NAME), "v", 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    hello_raw(&b, 1, 2, 0, repeat(n, 'm', WIRE_MAX_NAME + 1), "v", 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    /* an embedded NUL: "m1\0x" must not pass as "m1" */
    static const uint8_t nul[] = {1, 0, 1, 0, 0, 0, 0, 0, 4, 'm', '1', 0, 'x', 1, 'v', 3, 's', 'd', 'a', 0, 2, 0, 0, 0, 0, 0, 0};
    wt_expect(WIRE_T_HELLO, nul, sizeof nul, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

Test(hello, disk_name_rule)
{
    wire_buf_t b = {0};
    for (size_t i = 0; i < NBAD; i++) {
        const char *names[2] = {"ok", bad_names[i]};
        hello_raw(&b, 1, 2, 0, "m1", "v", 2, names, two_sizes);
        wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    }
    char n[WIRE_MAX_NAME + 2];
    const char *names[2] = {"ok", repeat(n, 'd', WIRE_MAX_NAME)};
    hello_raw(&b, 1, 2, 0, "m1", "v", 2, names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    names[1] = repeat(n, 'd', WIRE_MAX_NAME + 1);
    hello_raw(&b, 1, 2, 0, "m1", "v", 2, names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

Test(hello, duplicate_disk_names)
{
    wire_buf_t b = {0};
    const char *names[] = {"a", "b", "c", "b"};
    const uint64_t sizes[] = {512, 512, 512, 512};
    hello_raw(&b, 1, 4, 0, "m1", "v", 4, names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_PROTOCOL, "twice");
    /* case matters: file systems here are case sensitive */
    const char *names2[] = {"a", "A"};
    hello_raw(&b, 1, 2, 0, "m1", "v", 2, names2, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    wire_buf_free(&b);
}

Test(hello, disk_sizes_are_positive_multiples_of_512)
{
    /* Past INT64_MAX too: sizes become off_t in the server. */
    static const uint64_t bad[] = {0, 1, 511, 513, 1000, 4097, (uint64_t)INT64_MAX + 1, UINT64_MAX - 511, UINT64_MAX};
    wire_buf_t b = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const uint64_t sizes[] = {4096, bad[i]};
        hello_raw(&b, 1, 2, 0, "m1", "v", 2, two_names, sizes);
        wt_expect(WIRE_T_HELLO, b.data, b.len, WIRE_E_RANGE, "size");
    }
    const uint64_t sizes[] = {512, (uint64_t)INT64_MAX - 511};
    hello_raw(&b, 1, 2, 0, "m1", "v", 2, two_names, sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    wire_buf_free(&b);
}

Test(hello, agent_version_is_text_up_to_255)
{
    wire_buf_t b = {0};
    char v[WIRE_MAX_TEXT + 1];
    hello_raw(&b, 1, 2, 0, "m1", repeat(v, '~', WIRE_MAX_TEXT), 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    hello_raw(&b, 1, 2, 0, "m1", "", 2, two_names, two_sizes);
    wt_expect(WIRE_T_HELLO, b.data, b.len, 0, NULL);
    wire_buf_free(&b);
}

/* Truncated inside version, disk count or flags: a truncated body
 * (protocol), not a disk count out of range. */
Test(hello, truncated_inside_the_fixed_fields)
{
    wire_buf_t b = {0};
    hello_raw(&b, 1, 2, 0, "m1", "v", 2, two_names, two_sizes);
    for (size_t n = 0; n < 8; n++)
        wt_expect(WIRE_T_HELLO, b.data, n, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

/* ---- CHALLENGE, AUTH, WELCOME, ACK ----------------------------------------------- */

static void check_challenge(const uint8_t *body, size_t len, void *arg)
{
    const wire_challenge_t *want = arg;
    wire_challenge_t got;
    memset(&got, 0xee, sizeof got);
    char reason[256] = "";
    cr_assert_eq(wire_dec_challenge(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert(memcmp(got.nonce, want->nonce, WIRE_NONCE_LEN) == 0);
    cr_assert_str_eq(got.server_id, want->server_id);
}

Test(challenge, roundtrip)
{
    wire_challenge_t c = {.server_id = "appliance-1 (tidemark 0.1.0)"};
    for (unsigned i = 0; i < WIRE_NONCE_LEN; i++)
        c.nonce[i] = (uint8_t)(255 - i * 3);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_challenge(&b, &c), 0);
    cr_assert_eq(wt_body_len(&b), WIRE_NONCE_LEN + 1 + strlen(c.server_id));
    wt_roundtrip(&b, WIRE_T_CHALLENGE, check_challenge, &c);
    wire_buf_reset(&b);
    repeat(c.server_id, 'S', WIRE_MAX_TEXT);
    cr_assert_eq(wire_enc_challenge(&b, &c), 0);
    wt_roundtrip(&b, WIRE_T_CHALLENGE, check_challenge, &c);
    wire_buf_reset(&b);
    c.server_id[0] = '\0';
    cr_assert_eq(wire_enc_challenge(&b, &c), 0);
    wt_roundtrip(&b, WIRE_T_CHALLENGE, check_challenge, &c);
    wire_buf_free(&b);
}

Test(challenge, nul_in_server_id)
{
    uint8_t body[WIRE_NONCE_LEN + 4] = {0};
    body[WIRE_NONCE_LEN] = 3;
    body[WIRE_NONCE_LEN + 1] = 'a';
    body[WIRE_NONCE_LEN + 3] = 'b';
    wt_expect(WIRE_T_CHALLENGE, body, sizeof body, WIRE_E_PROTOCOL, NULL);
}

static void check_auth(const uint8_t *body, size_t len, void *arg)
{
    uint8_t got[WIRE_MAC_LEN];
    char reason[256] = "";
    cr_assert_eq(wire_dec_auth(body, len, got, reason, sizeof reason), 0, "%s", reason);
    cr_assert(memcmp(got, arg, WIRE_MAC_LEN) == 0);
}

Test(auth, roundtrip_and_exact_length)
{
    uint8_t mac[WIRE_MAC_LEN];
    for (unsigned i = 0; i < sizeof mac; i++)
        mac[i] = (uint8_t)(i * 11 + 1);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_auth(&b, mac), 0);
    cr_assert_eq(wt_body_len(&b), WIRE_MAC_LEN);
    wt_roundtrip(&b, WIRE_T_AUTH, check_auth, mac);
    uint8_t body[WIRE_MAC_LEN + 1] = {0};
    wt_expect(WIRE_T_AUTH, body, WIRE_MAC_LEN - 1, WIRE_E_PROTOCOL, NULL);
    wt_expect(WIRE_T_AUTH, body, WIRE_MAC_LEN + 1, WIRE_E_PROTOCOL, "trailing");
    wire_buf_free(&b);
}

static void check_welcome(const uint8_t *body, size_t len, void *arg)
{
    const wire_welcome_t *want = arg;
    wire_welcome_t got;
    char reason[256] = "";
    cr_assert_eq(wire_dec_welcome(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.next_seq, want->next_seq);
    cr_assert_eq(got.window_bytes, want->window_bytes);
    cr_assert_eq(got.max_batch_data, want->max_batch_data);
    cr_assert_eq(got.ndisks, want->ndisks);
    cr_assert_eq(memcmp(got.disk_state, want->disk_state, want->ndisks), 0);
}

Test(welcome, roundtrip)
{
    wire_welcome_t w = {.next_seq = 0x1122334455667788ull, .window_bytes = 64u << 20, .max_batch_data = 1u << 20,
                        .ndisks = 3, .disk_state = {WIRE_DISK_SYNCED, WIRE_DISK_NEW, WIRE_DISK_SYNCED}};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_welcome(&b, &w), 0);
    cr_assert_eq(wt_body_len(&b), 16 + 2 + 3);
    /* the layout of the document: u16 ndisks, then one state byte per disk */
    cr_assert_eq(tm_get16(wt_body(&b) + 16), 3);
    cr_assert_eq(wt_body(&b)[18], 1);
    cr_assert_eq(wt_body(&b)[19], 0);
    cr_assert_eq(wt_body(&b)[20], 1);
    wt_roundtrip(&b, WIRE_T_WELCOME, check_welcome, &w);
    wire_buf_reset(&b);
    w = (wire_welcome_t){.next_seq = 1, .window_bytes = UINT32_MAX, .max_batch_data = WIRE_MAX_BATCH_DATA,
                         .ndisks = WIRE_MAX_DISKS};
    memset(w.disk_state, WIRE_DISK_SYNCED, sizeof w.disk_state);
    cr_assert_eq(wire_enc_welcome(&b, &w), 0);
    cr_assert_eq(wt_body_len(&b), wire_body_limit(WIRE_T_WELCOME), "the largest WELCOME is the limit");
    wt_roundtrip(&b, WIRE_T_WELCOME, check_welcome, &w);
    wire_buf_free(&b);
    /* 65 disks cannot be encoded */
    w.ndisks = WIRE_MAX_DISKS + 1;
    cr_assert_eq(wire_enc_welcome(&b, &w), -1);
    wire_buf_free(&b);
}

Test(welcome, impossible_values)
{
    const wire_welcome_t bad[] = {
        {.next_seq = 0, .window_bytes = 1, .max_batch_data = 1},
        {.next_seq = 1, .window_bytes = 1, .max_batch_data = 0},
        {.next_seq = 1, .window_bytes = 1, .max_batch_data = WIRE_MAX_BATCH_DATA + 1},
        {.next_seq = 1, .window_bytes = 1, .max_batch_data = UINT32_MAX},
        {.next_seq = 1, .window_bytes = 1, .max_batch_data = 1, .ndisks = 2, .disk_state = {0, 2}},
        {.next_seq = 1, .window_bytes = 1, .max_batch_data = 1, .ndisks = 1, .disk_state = {0xff}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_welcome_t w = bad[i];
        if (w.ndisks == 0)
            w.ndisks = 1;
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_welcome(&b, &w), 0);
        wt_expect(WIRE_T_WELCOME, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, NULL);
        wire_buf_free(&b);
    }
}

Test(welcome, disk_count_and_states_are_checked)
{
    wire_welcome_t w = {.next_seq = 1, .window_bytes = 1, .max_batch_data = 1, .ndisks = 2, .disk_state = {1, 0}};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_welcome(&b, &w), 0);
    uint8_t body[128];
    size_t len = wt_body_len(&b);
    memcpy(body, wt_body(&b), len);
    /* no disks, or more than the protocol allows */
    tm_put16(body + 16, 0);
    wt_expect(WIRE_T_WELCOME, body, 18, WIRE_E_TOO_BIG, "disks");
    tm_put16(body + 16, WIRE_MAX_DISKS + 1);
    wt_expect(WIRE_T_WELCOME, body, len, WIRE_E_TOO_BIG, "disks");
    /* the states cut short, or one too many */
    tm_put16(body + 16, 2);
    wt_expect(WIRE_T_WELCOME, body, len - 1, WIRE_E_PROTOCOL, NULL);
    body[len] = 0;
    wt_expect(WIRE_T_WELCOME, body, len + 1, WIRE_E_PROTOCOL, "trailing");
    /* the version 1 layout before disks existed: truncated */
    wt_expect(WIRE_T_WELCOME, body, 16, WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

static void check_ack(const uint8_t *body, size_t len, void *arg)
{
    uint64_t got = 1234;
    char reason[256] = "";
    cr_assert_eq(wire_dec_ack(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got, *(const uint64_t *)arg);
}

Test(ack, roundtrip)
{
    /* 0 is meaningful: nothing is durable yet. */
    uint64_t v[] = {0, 1, 0x8000000000000000ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_ack(&b, v[i]), 0);
        wt_roundtrip(&b, WIRE_T_ACK, check_ack, &v[i]);
        wire_buf_free(&b);
    }
}

/* ---- TAG_REQUEST, STOP, ERROR -------------------------------------------------- */

struct tagreq {
    uint8_t kind;
    uint64_t id;
    const char *name;
};

static void check_tagreq(const uint8_t *body, size_t len, void *arg)
{
    const struct tagreq *want = arg;
    uint8_t kind = 0;
    uint64_t id = 0;
    char name[WIRE_MAX_NAME + 1];
    char reason[256] = "";
    cr_assert_eq(wire_dec_tag_request(body, len, &kind, &id, name, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(kind, want->kind);
    cr_assert_eq(id, want->id);
    cr_assert_str_eq(name, want->name);
}

Test(tag_request, roundtrip_each_kind)
{
    char n[WIRE_MAX_NAME + 1];
    struct tagreq t[] = {{WIRE_TAG_CRASH, 1, "hourly"},
                         {WIRE_TAG_APP, UINT64_MAX, "pre-upgrade_2024.01"},
                         {WIRE_TAG_GROUP, 0, repeat(n, 'g', WIRE_MAX_NAME)}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_tag_request(&b, t[i].kind, t[i].id, t[i].name), 0);
        wt_roundtrip(&b, WIRE_T_TAG_REQUEST, check_tagreq, &t[i]);
        wire_buf_free(&b);
    }
}

Test(tag_request, undefined_kinds)
{
    static const uint8_t kinds[] = {0, 4, 5, 0x80, 0xff};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_tag_request(&b, kinds[i], 1, "t"), 0);
        wt_expect(WIRE_T_TAG_REQUEST, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, "kind");
        wire_buf_free(&b);
    }
}

Test(tag_request, name_too_long)
{
    char n[WIRE_MAX_NAME + 2];
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_tag_request(&b, WIRE_TAG_CRASH, 1, repeat(n, 't', WIRE_MAX_NAME + 1)), 0);
    wt_expect(WIRE_T_TAG_REQUEST, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

/* Tag names are names (docs/agent-protocol.md): the agent turns a request
 * into a tag record, which the server refuses unless the name passes. */
Test(tag_request, name_rule)
{
    for (size_t i = 0; i < NBAD; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_tag_request(&b, WIRE_TAG_CRASH, 1, bad_names[i]), 0);
        wt_expect(WIRE_T_TAG_REQUEST, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, NULL);
        wire_buf_free(&b);
    }
}

struct stop_want {
    uint64_t id;
    const char *name;
    const char *reason;
};

static void check_stop(const uint8_t *body, size_t len, void *arg)
{
    const struct stop_want *want = arg;
    wire_stop_t got;
    memset(&got, 0xee, sizeof got);
    char reason[256] = "";
    cr_assert_eq(wire_dec_stop(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.id, want->id);
    cr_assert_str_eq(got.name, want->name);
    cr_assert_str_eq(got.reason, want->reason);
}

Test(stop, roundtrip)
{
    char n[WIRE_MAX_NAME + 1], t[WIRE_MAX_TEXT + 1];
    struct stop_want w[] = {{0, "f", ""},
                            {41, "final-41", "planned failover to site B"},
                            {UINT64_MAX, repeat(n, 'f', WIRE_MAX_NAME), repeat(t, 'r', WIRE_MAX_TEXT)}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_stop(&b, w[i].id, w[i].name, w[i].reason), 0);
        wt_roundtrip(&b, WIRE_T_STOP, check_stop, &w[i]);
        wire_buf_free(&b);
    }
    /* NULL reason: empty */
    wire_buf_t b = {0};
    struct stop_want empty = {7, "x", ""};
    cr_assert_eq(wire_enc_stop(&b, 7, "x", NULL), 0);
    wt_roundtrip(&b, WIRE_T_STOP, check_stop, &empty);
    wire_buf_free(&b);
}

Test(stop, layout_is_id_name_reason)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, 0x0102030405060708ull, "ab", "why"), 0);
    static const uint8_t want[] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 2, 'a', 'b', 3, 'w', 'h', 'y'};
    cr_assert_eq(wt_body_len(&b), sizeof want);
    cr_assert(memcmp(wt_body(&b), want, sizeof want) == 0);
    cr_assert_eq(tm_get16(b.data), 0x85);
    wire_buf_free(&b);
}

/* The final tag's name becomes a tag record: only names pass, as for
 * TAG_REQUEST; the encoder will not even make such a frame. */
Test(stop, name_rule)
{
    char n[WIRE_MAX_NAME + 2];
    for (size_t i = 0; i < NBAD + 1; i++) {
        const char *name = i < NBAD ? bad_names[i] : repeat(n, 't', WIRE_MAX_NAME + 1);
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_stop(&b, 1, name, "r"), -1, "name '%s' encoded", name);
        cr_assert_eq(b.len, 0);
        /* by hand */
        size_t f = wire_frame_begin(&b, WIRE_T_STOP);
        wire_put_u64(&b, 1);
        wire_put_str(&b, name);
        wire_put_str(&b, "r");
        cr_assert_eq(wire_frame_end(&b, f), 0);
        wt_expect(WIRE_T_STOP, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, NULL);
        wire_buf_free(&b);
    }
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, 1, NULL, "r"), -1);
    wire_buf_free(&b);
}

Test(stop, reason_over_the_limit)
{
    char t[WIRE_MAX_TEXT + 2];
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_stop(&b, 1, "f", repeat(t, 'r', WIRE_MAX_TEXT + 1)), -1);
    cr_assert_eq(wire_enc_resume(&b, t), -1);
    cr_assert_eq(b.len, 0);
    wire_buf_free(&b);
}

Test(stop, the_old_layout_is_refused)
{
    /* Before the final tag, STOP was `str reason` alone: such a body is
     * read as an id and a name that are not there. */
    wire_buf_t b = {0};
    wt_frame_raw(&b, WIRE_T_STOP, 0, "\x10planned failover", 17);
    wt_expect(WIRE_T_STOP, wt_body(&b), wt_body_len(&b), WIRE_E_PROTOCOL, NULL);
    wire_buf_free(&b);
}

static void check_resume(const uint8_t *body, size_t len, void *arg)
{
    char text[WIRE_MAX_TEXT + 1];
    char reason[256] = "";
    cr_assert_eq(wire_dec_resume(body, len, text, reason, sizeof reason), 0, "%s", reason);
    cr_assert_str_eq(text, arg);
}

Test(resume, roundtrip)
{
    char t[WIRE_MAX_TEXT + 1];
    const char *texts[] = {"", "planned failover cancelled", repeat(t, 'r', WIRE_MAX_TEXT)};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_resume(&b, texts[i]), 0);
        cr_assert_eq(tm_get16(b.data), 0x87);
        wt_roundtrip(&b, WIRE_T_RESUME, check_resume, (void *)texts[i]);
        wire_buf_free(&b);
    }
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_resume(&b, NULL), 0);
    wt_roundtrip(&b, WIRE_T_RESUME, check_resume, "");
    wire_buf_free(&b);
}

Test(resume, bad_text)
{
    /* a NUL inside the text, and a length past the body */
    static const uint8_t nul[] = {3, 'a', 0, 'b'};
    wt_expect(WIRE_T_RESUME, nul, sizeof nul, WIRE_E_PROTOCOL, NULL);
    static const uint8_t past[] = {9, 'a', 'b'};
    wt_expect(WIRE_T_RESUME, past, sizeof past, WIRE_E_PROTOCOL, NULL);
    /* an empty body has no text at all */
    wt_expect(WIRE_T_RESUME, NULL, 0, WIRE_E_PROTOCOL, NULL);
}

struct err_want {
    uint16_t code;
    const char *text;
};

static void check_error(const uint8_t *body, size_t len, void *arg)
{
    const struct err_want *want = arg;
    wire_error_t got;
    char reason[256] = "";
    cr_assert_eq(wire_dec_error(body, len, &got, reason, sizeof reason), 0, "%s", reason);
    cr_assert_eq(got.code, want->code);
    cr_assert_str_eq(got.text, want->text);
}

Test(error, roundtrip)
{
    char t[WIRE_MAX_TEXT + 1];
    struct err_want e[] = {{WIRE_E_PROTOCOL, "records body is truncated"},
                           {WIRE_E_STOPPED, ""},
                           {0xffff, repeat(t, 'e', WIRE_MAX_TEXT)}};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        wire_buf_t b = {0};
        cr_assert_eq(wire_enc_error(&b, e[i].code, e[i].text), 0);
        wt_roundtrip(&b, WIRE_T_ERROR, check_error, &e[i]);
        wire_buf_free(&b);
    }
}

/* ---- every type: truncated and trailing ----------------------------------------- */

/* A valid body of each type, in b (as frames); returns how many. */
static size_t one_of_each(wire_buf_t *b, uint16_t types[24], size_t starts[25])
{
    size_t n = 0;
#define NEXT(t, call)                                                                                          \
    do {                                                                                                       \
        starts[n] = b->len;                                                                                    \
        types[n++] = (t);                                                                                      \
        cr_assert_eq((call), 0);                                                                               \
    } while (0)
    wire_hello_t h = sample_hello(3);
    NEXT(WIRE_T_HELLO, wire_enc_hello(b, &h));
    uint8_t mac[WIRE_MAC_LEN] = {1};
    NEXT(WIRE_T_AUTH, wire_enc_auth(b, mac));
    uint8_t data[1024];
    memset(data, 'w', sizeof data);
    wire_entry_t e[] = {{.kind = WIRE_R_WRITE, .length = 1024, .offset = 512, .data = data},
                        {.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_APP, .length = 2, .id = 3, .data = (const uint8_t *)"t1"}};
    NEXT(WIRE_T_RECORDS, wire_enc_records(b, 5, e, 2, false));
    NEXT(WIRE_T_RECORDS, wire_enc_records(b, 5, e, 2, true));
    wire_challenge_t c = {.server_id = "srv"};
    NEXT(WIRE_T_CHALLENGE, wire_enc_challenge(b, &c));
    wire_welcome_t w = {.next_seq = 3, .window_bytes = 10, .max_batch_data = 10, .ndisks = 1};
    NEXT(WIRE_T_WELCOME, wire_enc_welcome(b, &w));
    NEXT(WIRE_T_ACK, wire_enc_ack(b, 7));
    NEXT(WIRE_T_TAG_REQUEST, wire_enc_tag_request(b, WIRE_TAG_GROUP, 9, "grp"));
    NEXT(WIRE_T_STOP, wire_enc_stop(b, 5, "final", "stop"));
    NEXT(WIRE_T_RESUME, wire_enc_resume(b, "go on"));
    NEXT(WIRE_T_ERROR, wire_enc_error(b, WIRE_E_SEQUENCE, "gap"));
    wire_group_prepare_t gp = {.round = 4, .kind = WIRE_TAG_APP, .hold_ms = 100, .name = "g4"};
    NEXT(WIRE_T_GROUP_PREPARE, wire_enc_group_prepare(b, &gp));
    wire_prepared_t pr = {.round = 4, .status = WIRE_PREPARED_FAILED, .reason = "no"};
    NEXT(WIRE_T_PREPARED, wire_enc_prepared(b, &pr));
    NEXT(WIRE_T_GROUP_COMMIT, wire_enc_group_commit(b, 4));
    NEXT(WIRE_T_GROUP_ABORT, wire_enc_group_abort(b, 4));
#undef NEXT
    starts[n] = b->len;
    return n;
}

Test(bodies, truncated_bodies_are_refused)
{
    wire_buf_t b = {0};
    uint16_t types[24];
    size_t starts[25];
    size_t n = one_of_each(&b, types, starts);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *body = b.data + starts[i] + WIRE_HDR_LEN;
        size_t len = starts[i + 1] - starts[i] - WIRE_HDR_LEN;
        wt_expect(types[i], body, len, 0, NULL);
        /* HELLO's fixed fields: test hello.truncated_inside_the_fixed_fields */
        for (size_t cut = types[i] == WIRE_T_HELLO ? 8 : 0; cut < len; cut++) {
            /* Exactly cut bytes, so ASan sees any read past the end. */
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, body, cut);
            char reason[256] = "";
            int rc = wt_dec_any(types[i], copy, cut, reason, sizeof reason);
            cr_assert_eq(rc, WIRE_E_PROTOCOL, "type 0x%x cut to %zu of %zu bytes: %d (%s) \"%s\"", types[i], cut,
                         len, rc, wire_err_name(rc), reason);
            cr_assert(reason[0]);
            free(copy);
        }
    }
    wire_buf_free(&b);
}

Test(bodies, trailing_bytes_are_refused)
{
    wire_buf_t b = {0};
    uint16_t types[24];
    size_t starts[25];
    size_t n = one_of_each(&b, types, starts);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *body = b.data + starts[i] + WIRE_HDR_LEN;
        size_t len = starts[i + 1] - starts[i] - WIRE_HDR_LEN;
        for (size_t extra = 1; extra <= 9; extra += 4) {
            uint8_t *copy = calloc(1, len + extra);
            memcpy(copy, body, len);
            wt_expect(types[i], copy, len + extra, WIRE_E_PROTOCOL, NULL);
            free(copy);
        }
    }
    wire_buf_free(&b);
}

/* ---- resync frames ------------------------------------------------------------ */

/* The body of the one frame in b. */
static const uint8_t *body_of(const wire_buf_t *b, size_t *len)
{
    cr_assert_geq(b->len, WIRE_HDR_LEN);
    *len = b->len - WIRE_HDR_LEN;
    return b->data + WIRE_HDR_LEN;
}

Test(resync, request_roundtrip_and_limits)
{
    wire_buf_t b = {0};
    char why[200];
    wire_resync_request_t q = {.disk = 63, .block_size = WIRE_RESYNC_MAX_BLOCK, .first_block = UINT64_MAX}, r;
    cr_assert_eq(wire_enc_resync_request(&b, &q), 0);
    size_t len;
    const uint8_t *body = body_of(&b, &len);
    cr_assert_eq(len, WIRE_RESYNC_REQUEST_LEN);
    cr_assert_eq(wire_dec_resync_request(body, len, &r, why, sizeof why), 0, "%s", why);
    cr_assert(r.disk == 63 && r.block_size == WIRE_RESYNC_MAX_BLOCK && r.first_block == UINT64_MAX);
    static const uint32_t bad_blocks[] = {0, 512, 2048, 4096 + 512, 3u << 12, 2u << 20, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_blocks / sizeof bad_blocks[0]; i++) {
        wire_buf_reset(&b);
        q.block_size = bad_blocks[i];
        cr_assert_eq(wire_enc_resync_request(&b, &q), 0);
        body = body_of(&b, &len);
        cr_assert_eq(wire_dec_resync_request(body, len, &r, why, sizeof why), WIRE_E_PROTOCOL, "block %u",
                     bad_blocks[i]);
        cr_assert(strstr(why, "power of two"), "%s", why);
    }
    for (uint32_t bs = WIRE_RESYNC_MIN_BLOCK; bs <= WIRE_RESYNC_MAX_BLOCK; bs *= 2)
        cr_assert(wire_resync_block_ok(bs), "%u", bs);
    uint8_t raw[WIRE_RESYNC_REQUEST_LEN + 1] = {0};
    tm_put32(raw + 4, 65536);
    cr_assert_eq(wire_dec_resync_request(raw, sizeof raw, &r, why, sizeof why), WIRE_E_PROTOCOL, "trailing byte");
    cr_assert_eq(wire_dec_resync_request(raw, sizeof raw - 2, &r, why, sizeof why), WIRE_E_PROTOCOL, "truncated");
    tm_put16(raw + 2, 1);
    cr_assert_eq(wire_dec_resync_request(raw, WIRE_RESYNC_REQUEST_LEN, &r, why, sizeof why), WIRE_E_PROTOCOL,
                 "reserved");
    tm_put16(raw + 2, 0);
    tm_put16(raw, WIRE_MAX_DISKS);
    cr_assert_eq(wire_dec_resync_request(raw, WIRE_RESYNC_REQUEST_LEN, &r, why, sizeof why), WIRE_E_RANGE, "disk");
    wire_buf_free(&b);
}

Test(resync, ack_roundtrip_and_limits)
{
    wire_buf_t b = {0};
    char why[200];
    uint16_t d, f;
    for (uint16_t frames = 0; frames <= WIRE_RESYNC_WINDOW + 1; frames++) {
        wire_buf_reset(&b);
        cr_assert_eq(wire_enc_resync_ack(&b, 2, frames), 0);
        size_t len;
        const uint8_t *body = body_of(&b, &len);
        int rc = wire_dec_resync_ack(body, len, &d, &f, why, sizeof why);
        bool ok = frames >= 1 && frames <= WIRE_RESYNC_WINDOW;
        cr_assert_eq(rc, ok ? 0 : WIRE_E_PROTOCOL, "frames %u: %s", frames, why);
        if (ok)
            cr_assert(d == 2 && f == frames);
    }
    uint8_t raw[WIRE_RESYNC_ACK_LEN] = {0};
    tm_put16(raw, WIRE_MAX_DISKS);
    tm_put16(raw + 2, 1);
    cr_assert_eq(wire_dec_resync_ack(raw, sizeof raw, &d, &f, why, sizeof why), WIRE_E_RANGE);
    cr_assert_eq(wire_dec_resync_ack(raw, sizeof raw - 1, &d, &f, why, sizeof why), WIRE_E_PROTOCOL);
    wire_buf_free(&b);
}

Test(resync, sums_roundtrip_at_the_limit)
{
    static uint64_t sums[WIRE_MAX_SUMS];
    for (uint32_t i = 0; i < WIRE_MAX_SUMS; i++)
        sums[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    wire_resync_sums_t m = {.disk = 5, .flags = WIRE_SUMS_LAST, .block_size = 4096, .seq = 99, .first_block = 7,
                            .count = WIRE_MAX_SUMS, .sums = sums},
                       r;
    wire_buf_t b = {0};
    char why[200];
    cr_assert_eq(wire_enc_resync_sums(&b, &m), 0);
    size_t len;
    const uint8_t *body = body_of(&b, &len);
    cr_assert_eq(len, wire_body_limit(WIRE_T_RESYNC_SUMS), "the largest body is the limit");
    cr_assert_eq(wire_dec_resync_sums(body, len, &r, why, sizeof why), 0, "%s", why);
    cr_assert(r.disk == 5 && r.flags == WIRE_SUMS_LAST && r.block_size == 4096 && r.seq == 99 && r.first_block == 7 &&
              r.count == WIRE_MAX_SUMS);
    for (uint32_t i = 0; i < WIRE_MAX_SUMS; i++)
        cr_assert_eq(wire_sums_get(&r, i), sums[i], "sum %u", i);
    m.count = WIRE_MAX_SUMS + 1;
    cr_assert_eq(wire_enc_resync_sums(&b, &m), -1, "over the limit encoded");
    wire_buf_free(&b);
}

Test(resync, sums_bad_bodies)
{
    const uint64_t sums[2] = {1, 2};
    wire_resync_sums_t m = {.disk = 0, .block_size = 65536, .seq = 1, .first_block = 0, .count = 2, .sums = sums}, r;
    wire_buf_t b = {0};
    char why[200];
    size_t len;
    cr_assert_eq(wire_enc_resync_sums(&b, &m), 0);
    const uint8_t *good = body_of(&b, &len);
    uint8_t body[WIRE_RESYNC_SUMS_HDR_LEN + 16];
    cr_assert_eq(len, sizeof body);
#define BAD(code, has, ...)                                                                                   \
    do {                                                                                                    \
        memcpy(body, good, sizeof body);                                                                    \
        __VA_ARGS__;                                                                                        \
        int rc_ = wire_dec_resync_sums(body, sizeof body, &r, why, sizeof why);                             \
        cr_assert_eq(rc_, code, "%s: %d (%s)", #__VA_ARGS__, rc_, why);                                    \
        cr_assert(strstr(why, has), "%s: \"%s\" lacks \"%s\"", #__VA_ARGS__, why, has);                     \
    } while (0)
    BAD(WIRE_E_TOO_BIG, "at most", tm_put32(body + 24, WIRE_MAX_SUMS + 1));
    BAD(WIRE_E_PROTOCOL, "does not hold", tm_put32(body + 24, 3));
    BAD(WIRE_E_PROTOCOL, "must be zero", tm_put32(body + 28, 1));
    BAD(WIRE_E_PROTOCOL, "must be zero", tm_put16(body + 2, 2));
    BAD(WIRE_E_RANGE, "disk", tm_put16(body, WIRE_MAX_DISKS));
    BAD(WIRE_E_PROTOCOL, "power of two", tm_put32(body + 4, 65536 + 4096));
    BAD(WIRE_E_RANGE, "2^64", tm_put64(body + 16, UINT64_MAX - 1));
#undef BAD
    /* a frame without sums is the last one, or nothing */
    uint8_t hdr[WIRE_RESYNC_SUMS_HDR_LEN];
    memcpy(hdr, good, sizeof hdr);
    tm_put32(hdr + 24, 0);
    cr_assert_eq(wire_dec_resync_sums(hdr, sizeof hdr, &r, why, sizeof why), WIRE_E_PROTOCOL);
    tm_put16(hdr + 2, WIRE_SUMS_LAST);
    cr_assert_eq(wire_dec_resync_sums(hdr, sizeof hdr, &r, why, sizeof why), 0, "%s", why);
    cr_assert_eq(wire_dec_resync_sums(hdr, sizeof hdr - 1, &r, why, sizeof why), WIRE_E_PROTOCOL, "truncated");
    wire_buf_free(&b);
}

Test(resync, the_resync_record)
{
    wire_entry_t e[2] = {{.kind = WIRE_R_RESYNC, .disk = 63}, {.kind = WIRE_R_SYNCED, .disk = 63}};
    wire_buf_t b = {0};
    char why[200];
    cr_assert_eq(wire_enc_records(&b, 5, e, 2, false), 0);
    size_t len;
    const uint8_t *body = body_of(&b, &len);
    wire_records_t *r = malloc(sizeof *r);
    cr_assert_not_null(r);
    cr_assert_eq(wire_dec_records_entries(body, len, r, why, sizeof why), 0, "%s", why);
    cr_assert(r->entries[0].kind == WIRE_R_RESYNC && r->entries[0].disk == 63);
    /* every field but kind and disk must be 0 */
    uint8_t *ent = b.data + WIRE_HDR_LEN + WIRE_RECORDS_HDR_LEN;
    tm_put64(ent + 16, 512); /* offset */
    cr_assert_eq(wire_dec_records_entries(body, len, r, why, sizeof why), WIRE_E_PROTOCOL);
    cr_assert(strstr(why, "resync fields"), "%s", why);
    tm_put64(ent + 16, 0);
    tm_put16(ent + 4, WIRE_MAX_DISKS);
    cr_assert_eq(wire_dec_records_entries(body, len, r, why, sizeof why), WIRE_E_RANGE);
    free(r);
    wire_buf_free(&b);
}
