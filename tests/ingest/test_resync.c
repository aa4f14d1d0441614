/*
 * Resync on the server side, against the real `tidemark serve` (its
 * block-sum provider reads the appliance's copy through the points stage):
 * the sums of a disk are those of what the agent streamed, a frame at a
 * time within the window, the short last block included; the machine shows
 * as "resync" while a RESYNC record has no SYNCED after it; and every bad
 * resync frame gets ERROR with its code, the connection closed, and the
 * other agent streams on.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "base/mem.h"
#include "tests/ingest/ita.h"
#include "wire/msg.h"

TestSuite(ingest_resync, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define BLOCK 4096u
/* 6 frames of WIRE_MAX_SUMS sums (more than the window), the last one a
 * single short block */
#define DISK_SIZE ((uint64_t)5 * WIRE_MAX_SUMS * BLOCK + 2048)

/* Writes of known bytes onto disk 0, then SYNCED: a full copy. */
static void stream_disk(ita_agent_t *a, uint8_t *img, uint64_t *next)
{
    static const uint64_t offs[] = {0, 4096 * 7, 4096u * WIRE_MAX_SUMS - 512, 3u * WIRE_MAX_SUMS * BLOCK,
                                    DISK_SIZE - 2048};
    static uint8_t data[6][8192];
    wire_entry_t e[7];
    for (unsigned i = 0; i < 5; i++) {
        uint32_t len = offs[i] + 8192 > DISK_SIZE ? 2048 : 8192;
        for (uint32_t k = 0; k < len; k++)
            data[i][k] = (uint8_t)(i * 37 + k * 13 + 1);
        e[i] = (wire_entry_t){.kind = WIRE_R_WRITE, .offset = offs[i], .length = len, .data = data[i]};
        memcpy(img + offs[i], data[i], len);
    }
    e[5] = (wire_entry_t){.kind = WIRE_R_SYNCED};
    e[6] = (wire_entry_t){.kind = WIRE_R_RESYNC};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, *next, e, 7, true), 0);
    ita_send(a, &b);
    *next += 7;
    ita_wait_ack(a, *next - 1);
    wire_buf_free(&b);
}

static const wire_disk_t disks[1] = {{"d0", DISK_SIZE}};

Test(ingest_resync, sums_are_the_copys_a_window_at_a_time)
{
    const char *data = tc_path("data");
    uint8_t secret[32];
    ita_server_t s;
    ita_agent_t a;
    uint8_t *img = tm_calloc(1, DISK_SIZE);
    cr_assert_not_null(img);
    ita_add_machine(data, "vm1", secret);
    ita_start(&s, data, NULL);
    ita_connect(&a, s.port);
    wire_welcome_t w;
    uint64_t next = ita_handshake(&a, "vm1", secret, disks, 1, &w);
    cr_assert_eq(w.disk_state[0], WIRE_DISK_NEW);
    stream_disk(&a, img, &next);

    wire_buf_t b = {0};
    wire_resync_request_t q = {.disk = 0, .block_size = BLOCK, .first_block = 0};
    cr_assert_eq(wire_enc_resync_request(&b, &q), 0);
    ita_send(&a, &b);
    uint64_t nblocks = (DISK_SIZE + BLOCK - 1) / BLOCK, expect = 0;
    unsigned frames = 0;
    bool last = false;
    while (!last) {
        cr_assert(ita_recv(&a), "the server closed the connection");
        if (a.type == WIRE_T_ACK)
            continue;
        cr_assert_eq(a.type, WIRE_T_RESYNC_SUMS, "frame type 0x%x", a.type);
        wire_resync_sums_t m;
        char reason[200];
        cr_assert_eq(wire_dec_resync_sums(a.body, a.body_len, &m, reason, sizeof reason), 0, "%s", reason);
        cr_assert_eq(m.disk, 0);
        cr_assert_eq(m.block_size, BLOCK);
        cr_assert_eq(m.first_block, expect, "frame %u from block %llu", frames, (unsigned long long)m.first_block);
        cr_assert_geq(m.seq, next - 1, "sums as of %llu, before the durable %llu", (unsigned long long)m.seq,
                      (unsigned long long)(next - 1));
        for (uint32_t i = 0; i < m.count; i++) {
            uint64_t blk = m.first_block + i, off = blk * BLOCK;
            size_t len = off + BLOCK > DISK_SIZE ? (size_t)(DISK_SIZE - off) : BLOCK;
            cr_assert_eq(wire_sums_get(&m, i), XXH3_64bits(img + off, len), "block %llu", (unsigned long long)blk);
        }
        expect += m.count;
        last = m.flags & WIRE_SUMS_LAST;
        frames++;
        /* the window: the 4th frame in a row unacknowledged is the last the
         * server may send; acknowledge them two at a time from there */
        if (frames % 2 == 0 || last) {
            wire_buf_reset(&b);
            cr_assert_eq(wire_enc_resync_ack(&b, 0, (uint16_t)(frames % 2 == 0 ? 2 : 1)), 0);
            ita_send(&a, &b);
        }
    }
    cr_assert_eq(expect, nblocks);
    cr_assert_eq(frames, 6);
    /* The resync is over on the server: another may be asked for. */
    wire_buf_reset(&b);
    q.first_block = nblocks - 1;
    cr_assert_eq(wire_enc_resync_request(&b, &q), 0);
    ita_send(&a, &b);
    do
        cr_assert(ita_recv(&a));
    while (a.type == WIRE_T_ACK);
    cr_assert_eq(a.type, WIRE_T_RESYNC_SUMS);
    /* SYNCED ends the resync: the machine is protected again. */
    wire_entry_t e = {.kind = WIRE_R_SYNCED};
    wire_buf_reset(&b);
    cr_assert_eq(wire_enc_records(&b, next, &e, 1, false), 0);
    ita_send(&a, &b);
    ita_wait_ack(&a, next);
    ita_close(&a);
    ita_stop(&s);
    cr_assert(strstr(s.c.err, "machine vm1: resync of disk d0 began"), "%s", s.c.err);
    cr_assert(strstr(s.c.err, "machine vm1 is protected again: resync complete"), "%s", s.c.err);
    tc_child_free(&s.c);
    wire_buf_free(&b);
    tm_free(img);
}

/* ---- bad input ---------------------------------------------------------------- */

typedef void (*bad_fn)(ita_agent_t *a, const uint8_t secret[32]);

static void send_request(ita_agent_t *a, uint16_t disk, uint32_t block, uint64_t first)
{
    wire_buf_t b = {0};
    wire_resync_request_t q = {.disk = disk, .block_size = block, .first_block = first};
    cr_assert_eq(wire_enc_resync_request(&b, &q), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

static void send_ack(ita_agent_t *a, uint16_t disk, uint16_t frames)
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_resync_ack(&b, disk, frames), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

/* A streaming session of machine "bad" whose disk is copied. */
static void synced_session(ita_agent_t *a, const uint8_t secret[32])
{
    uint64_t next = ita_handshake(a, "bad", secret, disks, 1, NULL);
    wire_entry_t e = {.kind = WIRE_R_SYNCED};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, next, &e, 1, false), 0);
    ita_send(a, &b);
    ita_wait_ack(a, next);
    wire_buf_free(&b);
}

static void run_bad(int code, const char *says, bad_fn fn)
{
    const char *data = tc_path("data");
    uint8_t gsecret[32], bsecret[32];
    ita_server_t s;
    ita_agent_t good, bad;
    wire_buf_t b = {0};
    ita_add_machine(data, "good", gsecret);
    ita_add_machine(data, "bad", bsecret);
    ita_start(&s, data, NULL);
    ita_connect(&good, s.port);
    cr_assert_eq(ita_handshake(&good, "good", gsecret, disks, 1, NULL), 1);
    ita_connect(&bad, s.port);
    fn(&bad, bsecret);
    /* read until the ERROR: its code and text */
    bool found = false;
    while (!found && ita_recv(&bad)) {
        if (bad.type != WIRE_T_ERROR)
            continue;
        wire_error_t e;
        char reason[200];
        cr_assert_eq(wire_dec_error(bad.body, bad.body_len, &e, reason, sizeof reason), 0);
        cr_assert_eq(e.code, code, "error %u (%s), want %u: %s", e.code, wire_err_name(e.code), code, e.text);
        cr_assert(strstr(e.text, says), "\"%s\" does not say \"%s\"", e.text, says);
        found = true;
    }
    cr_assert(found, "no ERROR");
    cr_assert_not(ita_recv(&bad), "the connection stays open after the error");
    ita_close(&bad);
    ita_batch(&b, 1, 4, DISK_SIZE, 9, true);
    ita_send(&good, &b);
    cr_assert_eq(ita_wait_ack(&good, 4), 4);
    ita_close(&good);
    ita_stop(&s);
    tc_child_free(&s.c);
    wire_buf_free(&b);
}

static void do_no_such_disk(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_request(a, 1, BLOCK, 0);
}

static void do_not_synced(ita_agent_t *a, const uint8_t secret[32])
{
    ita_handshake(a, "bad", secret, disks, 1, NULL);
    send_request(a, 0, BLOCK, 0);
}

static void do_twice(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_request(a, 0, BLOCK, 0);
    send_request(a, 0, BLOCK, 0);
}

static void do_ack_without_resync(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_ack(a, 0, 1);
}

static void do_ack_too_many(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_request(a, 0, BLOCK, (DISK_SIZE + BLOCK - 1) / BLOCK - 1); /* one frame */
    do
        cr_assert(ita_recv(a));
    while (a->type != WIRE_T_RESYNC_SUMS);
    send_ack(a, 0, 2);
}

static void do_bad_block(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_request(a, 0, 4096 + 512, 0);
}

static void do_past_the_end(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    send_request(a, 0, BLOCK, (DISK_SIZE + BLOCK - 1) / BLOCK);
}

static void do_resync_record_of_no_disk(ita_agent_t *a, const uint8_t secret[32])
{
    uint64_t next = ita_handshake(a, "bad", secret, disks, 1, NULL);
    wire_entry_t e = {.kind = WIRE_R_RESYNC, .disk = 3};
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, next, &e, 1, false), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

static void do_before_welcome(ita_agent_t *a, const uint8_t secret[32])
{
    (void)secret;
    send_request(a, 0, BLOCK, 0);
}

static void do_ack_frames_zero(ita_agent_t *a, const uint8_t secret[32])
{
    synced_session(a, secret);
    /* an encoder of our own: wire_enc_resync_ack writes any value */
    send_ack(a, 0, 0);
}

Test(ingest_resync, a_disk_it_does_not_have) { run_bad(WIRE_E_RANGE, "the machine has 1", do_no_such_disk); }
Test(ingest_resync, a_disk_without_a_copy) { run_bad(WIRE_E_PROTOCOL, "no full copy", do_not_synced); }
Test(ingest_resync, a_second_request_while_one_runs) { run_bad(WIRE_E_PROTOCOL, "already running", do_twice); }
Test(ingest_resync, an_ack_without_a_resync) { run_bad(WIRE_E_PROTOCOL, "no resync of it", do_ack_without_resync); }
Test(ingest_resync, an_ack_of_frames_never_sent) { run_bad(WIRE_E_PROTOCOL, "were sent", do_ack_too_many); }
Test(ingest_resync, an_ack_of_no_frames) { run_bad(WIRE_E_PROTOCOL, "1 to 4", do_ack_frames_zero); }
Test(ingest_resync, a_block_size_not_a_power_of_two) { run_bad(WIRE_E_PROTOCOL, "power of two", do_bad_block); }
Test(ingest_resync, a_first_block_past_the_end) { run_bad(WIRE_E_RANGE, "blocks of 4096", do_past_the_end); }
Test(ingest_resync, a_resync_record_of_no_disk) { run_bad(WIRE_E_RANGE, "resync for disk 3", do_resync_record_of_no_disk); }
Test(ingest_resync, a_request_before_welcome) { run_bad(WIRE_E_PROTOCOL, "expected HELLO", do_before_welcome); }
