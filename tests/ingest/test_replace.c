/*
 * A stale session: an agent whose connection died without the server
 * noticing (simulated by an agent that stops reading and never closes)
 * reconnects. Its new session, authenticated with the machine's secret,
 * replaces the old one at once instead of getting `busy` until keepalive
 * gives up on the old connection (minutes): the old one gets ERROR(busy)
 * naming the new session's address and is closed, the old session's batches
 * settle first, and WELCOME names exactly one past them. A session that
 * fails authentication or names other disks replaces nothing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/ingest/itx.h"

TestSuite(replace, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (64ull << 20)
#define OLD_BATCHES 8

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

static void send_auth(ita_agent_t *a, const uint8_t mac[WIRE_MAC_LEN])
{
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_auth(&b, mac), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

Test(replace, a_new_session_replaces_a_stale_one)
{
    ita_server_t s;
    ita_agent_t old, fresh;
    uint8_t secret[32];
    wire_buf_t sent[OLD_BATCHES + 1];
    const char *data = tc_path("data");

    memset(sent, 0, sizeof sent);
    ita_add_machine(data, "web", secret);
    ita_start(&s, data, NULL);
    ita_connect(&old, s.port);
    cr_assert_eq(ita_handshake(&old, "web", secret, disks, 1, NULL), 1);
    uint64_t seq = 1;
    ita_batch(&sent[0], seq, 50, DISK_SIZE, 1, true);
    ita_send(&old, &sent[0]);
    seq += 50;
    cr_assert_eq(ita_wait_ack(&old, seq - 1), seq - 1);
    uint64_t acked = seq - 1;
    /* More batches the old agent never hears about: it stops reading here. */
    for (unsigned i = 1; i < OLD_BATCHES; i++) {
        ita_batch(&sent[i], seq, 200, DISK_SIZE, 1 + i, i % 2 == 0);
        ita_send(&old, &sent[i]);
        seq += 200;
    }

    /* The same machine again, while the old connection is still open. */
    ita_connect(&fresh, s.port);
    wire_welcome_t w;
    uint64_t next = ita_handshake(&fresh, "web", secret, disks, 1, &w);
    cr_assert(next > acked && next <= seq, "WELCOME at %lu; acked %lu, sent up to %lu", (unsigned long)next,
              (unsigned long)acked, (unsigned long)seq - 1);
    /* ... and the old one learns why it is closed. */
    wire_error_t e;
    itx_expect_error(&old, WIRE_E_BUSY, &e);
    char want[96];
    snprintf(want, sizeof want, "replaced by a new session from 127.0.0.1:%u", itx_local_port(&fresh));
    cr_assert(strstr(e.text, want), "ERROR text: %s (want %s)", e.text, want);
    ita_close(&old);

    /* The new session resumes exactly where the durable stream ends. */
    ita_batch(&sent[OLD_BATCHES], next, 30, DISK_SIZE, 99, false);
    ita_send(&fresh, &sent[OLD_BATCHES]);
    cr_assert_eq(ita_wait_ack(&fresh, next + 29), next + 29);
    ita_close(&fresh);
    ita_stop(&s);
    cr_assert(strstr(s.c.err, "busy: replaced by a new session"), "stderr:\n%s", s.c.err);

    /* Gapless, each batch once: the old session's up to next - 1 (all of
     * them that the server had read), then the new one's. */
    ita_journal_t j;
    ita_read_journal(data, &j);
    uint64_t expect = 1;
    size_t k = 0;
    for (size_t i = 0; i < j.nb; i++) {
        cr_assert_eq(j.b[i].first_seq, expect, "batch %zu starts at %lu, expected %lu", i,
                     (unsigned long)j.b[i].first_seq, (unsigned long)expect);
        if (expect == next)
            k = OLD_BATCHES; /* the new session's batch */
        cr_assert_lt(k, OLD_BATCHES + 1);
        cr_assert_eq(j.b[i].body_len, sent[k].len - WIRE_HDR_LEN, "batch %zu", i);
        cr_assert(memcmp(j.b[i].body, sent[k].data + WIRE_HDR_LEN, j.b[i].body_len) == 0, "batch %zu differs", i);
        expect += j.b[i].count;
        k++;
    }
    cr_assert_eq(expect, next + 30, "the journal ends at %lu", (unsigned long)expect - 1);
    ita_journal_free(&j);
    for (unsigned i = 0; i <= OLD_BATCHES; i++)
        wire_buf_free(&sent[i]);
    tc_child_free(&s.c);
}

Test(replace, only_a_session_that_could_stream_replaces)
{
    ita_server_t s;
    ita_agent_t live, intruder;
    uint8_t secret[32], nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    wire_buf_t b = {0};
    wire_error_t e;
    const char *data = tc_path("data");

    ita_add_machine(data, "db", secret);
    ita_start(&s, data, NULL);
    ita_connect(&live, s.port);
    cr_assert_eq(ita_handshake(&live, "db", secret, disks, 1, NULL), 1);

    /* A wrong secret. */
    ita_connect(&intruder, s.port);
    ita_hello(&intruder, "db", disks, 1, nonce);
    uint8_t wrong[32];
    memcpy(wrong, secret, sizeof wrong);
    wrong[0] ^= 1;
    ita_mac(wrong, nonce, "db", mac);
    send_auth(&intruder, mac);
    itx_expect_error(&intruder, WIRE_E_AUTH, &e);
    ita_close(&intruder);

    /* The right secret, other disks. */
    ita_connect(&intruder, s.port);
    wire_disk_t other = {"disk0", DISK_SIZE / 2};
    ita_hello(&intruder, "db", &other, 1, nonce);
    ita_mac(secret, nonce, "db", mac);
    send_auth(&intruder, mac);
    itx_expect_error(&intruder, WIRE_E_DISKS, &e);
    ita_close(&intruder);

    /* The live session never noticed. */
    cr_assert(itx_quiet(&live), "the live session was sent something or closed");
    ita_batch(&b, 1, 10, DISK_SIZE, 5, true);
    ita_send(&live, &b);
    cr_assert_eq(ita_wait_ack(&live, 10), 10);
    ita_close(&live);
    ita_stop(&s);
    cr_assert(!strstr(s.c.err, "replaced"), "stderr:\n%s", s.c.err);
    wire_buf_free(&b);
    tc_child_free(&s.c);
}
