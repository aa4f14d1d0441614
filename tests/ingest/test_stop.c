/*
 * Planned failover and commit, from ingest's side: ingest_request_stop and
 * ingest_request_resume send STOP and RESUME to a machine's live agent, and
 * every later session of the machine hears the last of them right after
 * its WELCOME; ingest_retire_machine closes the machine's session with
 * `stopped` once what it sent is durable (acknowledged first) and refuses
 * every later one, while the other machines stream on; machines retired
 * before a start (ingest_options_t.retired) are refused the same way.
 *
 * The server runs in this process (its.c), the agents are the blocking
 * wire-codec agent of ita.c over loopback.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "ingest/ingest.h"
#include "journal/journal.h"
#include "tests/ingest/itx.h"
#include "tests/ingest/its.h"

TestSuite(ingest_stop, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

#define DISK_SIZE (16ull << 20)
static const wire_disk_t disk0 = {.name = "disk0", .size = DISK_SIZE};

static const char *data_dir(void)
{
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    return data;
}

/* The next frame that is not an ACK: its type asserted. */
static void expect_frame(ita_agent_t *a, uint16_t type)
{
    for (;;) {
        cr_assert(ita_recv(a), "the server closed the connection; expected frame type 0x%x", type);
        if (a->type == WIRE_T_ACK)
            continue;
        if (a->type == WIRE_T_ERROR && type != WIRE_T_ERROR) {
            wire_error_t e;
            char r[160];
            wire_dec_error(a->body, a->body_len, &e, r, sizeof r);
            cr_assert_fail("ERROR %s: %s; expected frame type 0x%x", wire_err_name(e.code), e.text, type);
        }
        cr_assert_eq(a->type, type, "frame type 0x%x, expected 0x%x", a->type, type);
        return;
    }
}

static void expect_stop(ita_agent_t *a, uint64_t id, const char *name, const char *reason)
{
    expect_frame(a, WIRE_T_STOP);
    wire_stop_t m;
    char r[160];
    cr_assert_eq(wire_dec_stop(a->body, a->body_len, &m, r, sizeof r), 0, "%s", r);
    cr_assert_eq(m.id, id);
    cr_assert_str_eq(m.name, name);
    cr_assert_str_eq(m.reason, reason);
}

static void expect_resume(ita_agent_t *a)
{
    expect_frame(a, WIRE_T_RESUME);
    char text[WIRE_MAX_TEXT + 1], r[160];
    cr_assert_eq(wire_dec_resume(a->body, a->body_len, text, r, sizeof r), 0, "%s", r);
}

/* HELLO and AUTH with the given secret; the answer is not read. */
static void hello_auth(ita_agent_t *a, unsigned port, const char *machine, const uint8_t secret[32])
{
    uint8_t nonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
    ita_connect(a, port);
    ita_hello(a, machine, &disk0, 1, nonce);
    ita_mac(secret, nonce, machine, mac);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_auth(&b, mac), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

/* Poll (bounded) until the server saw the agent of machine go: a request
 * then says -ENOTCONN. */
static void wait_gone(its_t *s, const char *machine)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)ITA_WAIT_MS * 1000000u;
    ingest_machine_info_t mi;
    for (;;) {
        cr_assert_eq(its_machine(s, machine, &mi), 0);
        if (!mi.connected)
            return;
        cr_assert_lt(tm_mono_ns(), deadline, "the server never saw the agent of %s go", machine);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the server to notice the close, with a deadline */
    }
}

/* Send count records from seq on and wait for their ACK. */
static uint64_t stream(ita_agent_t *a, uint64_t seq, uint16_t count, uint64_t seed)
{
    wire_buf_t b = {0};
    ita_batch(&b, seq, count, DISK_SIZE, seed, seed % 2 == 0);
    ita_send(a, &b);
    wire_buf_free(&b);
    cr_assert_eq(ita_wait_ack(a, seq + count - 1), seq + count - 1);
    return seq + count;
}

Test(ingest_stop, stop_and_resume_reach_the_connected_agent)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "web1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    wire_welcome_t w;
    uint64_t seq = ita_handshake(&a, "web1", secret, &disk0, 1, &w);
    seq = stream(&a, seq, 20, 1);

    ingest_machine_info_t mi;
    cr_assert_eq(its_request_stop(s, "web1", 41, "final-41", "planned failover to site B"), 0);
    expect_stop(&a, 41, "final-41", "planned failover to site B");
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(mi.stopped && !mi.retired && mi.connected);

    /* The agent's final tag is a record like any other. */
    seq = stream(&a, seq, 1, 3);
    /* A second STOP while stopped: another final tag asked for. */
    cr_assert_eq(its_request_stop(s, "web1", 42, "final-42", NULL), 0);
    expect_stop(&a, 42, "final-42", "");
    /* A long reason is cut to what the wire carries, not refused. */
    char longer[400];
    memset(longer, 'r', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_assert_eq(its_request_stop(s, "web1", 43, "final-43", longer), 0);
    expect_stop(&a, 43, "final-43", longer + (sizeof longer - 1 - WIRE_MAX_TEXT));

    cr_assert_eq(its_request_resume(s, "web1"), 0);
    expect_resume(&a);
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(!mi.stopped);
    /* Resuming an agent that is not stopped is allowed: the agent ignores it. */
    cr_assert_eq(its_request_resume(s, "web1"), 0);
    expect_resume(&a);
    /* The session streams on. */
    stream(&a, seq, 30, 4);
    ita_close(&a);
    its_stop(s);
}

Test(ingest_stop, requests_that_cannot_be_sent)
{
    const char *data = data_dir();
    uint8_t secret[32], secret_db[32];
    its_add_machine(data, "web1", secret, NULL);
    its_add_machine(data, "db", secret_db, NULL);
    its_t *s = its_start(data, NULL);

    /* Names the wire cannot carry, as the final tag's. */
    cr_assert_eq(its_request_stop(s, "web1", 1, "", "r"), TM_EINVAL);
    cr_assert_eq(its_request_stop(s, "web1", 1, "../x", "r"), TM_EINVAL);
    cr_assert_eq(its_request_stop(s, "web1", 1, NULL, "r"), TM_EINVAL);
    cr_assert_eq(its_request_stop(s, NULL, 1, "f", "r"), TM_EINVAL);
    cr_assert_eq(its_request_resume(s, NULL), TM_EINVAL);
    /* Neither registered nor in the journal. */
    cr_assert_eq(its_request_stop(s, "nope", 1, "f", "r"), TM_ENOTFOUND);
    cr_assert_eq(its_request_stop(s, "..", 1, "f", "r"), TM_ENOTFOUND);
    cr_assert_eq(its_request_resume(s, "nope"), TM_ENOTFOUND);
    /* Registered, never connected. */
    cr_assert_eq(its_request_stop(s, "db", 1, "f", "r"), -ENOTCONN);
    cr_assert_eq(its_request_resume(s, "db"), -ENOTCONN);

    /* Connected but not authenticated: not yet an agent to ask. */
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint8_t nonce[WIRE_NONCE_LEN];
    ita_hello(&a, "db", &disk0, 1, nonce);
    cr_assert_eq(its_request_stop(s, "db", 1, "f", "r"), -ENOTCONN);
    ita_close(&a);

    /* Streaming, then gone. */
    ita_connect(&a, its_port(s));
    ita_handshake(&a, "web1", secret, &disk0, 1, NULL);
    ita_close(&a);
    wait_gone(s, "web1");
    cr_assert_eq(its_request_stop(s, "web1", 2, "f", "r"), -ENOTCONN);
    ingest_machine_info_t mi;
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(!mi.stopped, "a STOP that was not sent is not remembered");

    /* Nothing was remembered for the next session: it streams, unasked. */
    ita_reconnect(&a, its_port(s), "web1", secret, &disk0, 1, NULL);
    cr_assert(itx_quiet(&a), "the new session was sent something");
    ita_close(&a);
    its_stop(s);
}

Test(ingest_stop, the_last_word_reaches_every_later_session)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "web1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint64_t seq = ita_handshake(&a, "web1", secret, &disk0, 1, NULL);
    cr_assert_eq(its_request_stop(s, "web1", 7, "final-7", "planned failover"), 0);
    expect_stop(&a, 7, "final-7", "planned failover");
    /* The session is lost before anything more: the next one is told again,
     * right after its WELCOME. */
    ita_close(&a);
    seq = ita_reconnect(&a, its_port(s), "web1", secret, &disk0, 1, NULL);
    expect_stop(&a, 7, "final-7", "planned failover");
    seq = stream(&a, seq, 1, 5);
    ita_close(&a);
    wait_gone(s, "web1");

    /* A resume while no agent is here is remembered all the same. */
    cr_assert_eq(its_request_resume(s, "web1"), -ENOTCONN);
    ingest_machine_info_t mi;
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(!mi.stopped);
    seq = ita_reconnect(&a, its_port(s), "web1", secret, &disk0, 1, NULL);
    expect_resume(&a);
    stream(&a, seq, 10, 6);
    ita_close(&a);
    its_stop(s);
}

/* The last sequence of machine held in the journal of data (0: none). */
static uint64_t journal_end(const char *data, const char *machine)
{
    ita_journal_t j;
    ita_read_journal(data, &j);
    uint64_t end = 0;
    for (size_t i = 0; i < j.nb; i++) {
        if (strcmp(j.b[i].machine, machine) != 0)
            continue;
        cr_assert_eq(j.b[i].first_seq, end + 1, "a gap or repeat in %s's journal", machine);
        end = j.b[i].first_seq + j.b[i].count - 1;
    }
    ita_journal_free(&j);
    return end;
}

Test(ingest_stop, retire_refuses_the_machine_and_the_others_stream_on)
{
    const char *data = data_dir();
    uint8_t secret[32], secret_db[32];
    its_add_machine(data, "web1", secret, NULL);
    its_add_machine(data, "db", secret_db, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t web, db;
    ita_connect(&web, its_port(s));
    uint64_t wseq = ita_handshake(&web, "web1", secret, &disk0, 1, NULL);
    ita_connect(&db, its_port(s));
    uint64_t dseq = ita_handshake(&db, "db", secret_db, &disk0, 1, NULL);
    wseq = stream(&web, wseq, 40, 1);
    dseq = stream(&db, dseq, 40, 2);
    cr_assert_eq(its_request_stop(s, "web1", 9, "final-9", "planned failover"), 0);
    expect_stop(&web, 9, "final-9", "planned failover");

    cr_assert_eq(its_retire(s, "web1", "failover committed by job 12"), 0);
    wire_error_t e;
    itx_expect_error(&web, WIRE_E_STOPPED, &e);
    cr_assert_str_eq(e.text, "failover committed by job 12");
    ita_close(&web);
    ingest_machine_info_t mi;
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(mi.retired && !mi.stopped);

    /* Every later session that authenticates is refused with the reason;
     * one without the secret learns nothing. */
    hello_auth(&web, its_port(s), "web1", secret);
    itx_expect_error(&web, WIRE_E_STOPPED, &e);
    cr_assert_str_eq(e.text, "failover committed by job 12");
    ita_close(&web);
    uint8_t wrong[32];
    memcpy(wrong, secret, sizeof wrong);
    wrong[5] ^= 0x10;
    hello_auth(&web, its_port(s), "web1", wrong);
    itx_expect_error(&web, WIRE_E_AUTH, &e);
    ita_close(&web);
    /* No more requests to it. */
    cr_assert_eq(its_request_stop(s, "web1", 10, "f", "r"), -ENOTCONN);
    cr_assert_eq(its_request_resume(s, "web1"), -ENOTCONN);
    cr_assert_eq(its_request_tag(s, "web1", WIRE_TAG_CRASH, 11, "t"), TM_ECLOSED);
    /* Retiring again replaces the reason; an unknown machine is not found. */
    cr_assert_eq(its_retire(s, "web1", NULL), 0);
    hello_auth(&web, its_port(s), "web1", secret);
    itx_expect_error(&web, WIRE_E_STOPPED, &e);
    cr_assert_str_eq(e.text, INGEST_RETIRED_REASON);
    ita_close(&web);
    cr_assert_eq(its_retire(s, "nope", "x"), TM_ENOTFOUND);
    cr_assert_eq(its_retire(s, NULL, "x"), TM_EINVAL);

    /* The other machine never noticed. */
    cr_assert(itx_quiet(&db), "db was sent something");
    dseq = stream(&db, dseq, 40, 3);
    ita_close(&db);
    its_stop(s);
    cr_assert_eq(journal_end(data, "web1"), wseq - 1);
    cr_assert_eq(journal_end(data, "db"), dseq - 1);
}

Test(ingest_stop, retire_keeps_exactly_what_was_acknowledged)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "web1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint64_t seq = ita_handshake(&a, "web1", secret, &disk0, 1, NULL);
    seq = stream(&a, seq, 50, 1);
    /* Batches still on their way to the journal (or to the server) when the
     * machine is retired, and one more after: whatever the server kept is
     * acknowledged before the ERROR, and nothing else is kept. */
    wire_buf_t b = {0};
    for (unsigned i = 0; i < 6; i++) {
        ita_batch(&b, seq, 200, DISK_SIZE, 10 + i, i % 2 == 0);
        ita_send(&a, &b);
        seq += 200;
    }
    cr_assert_eq(its_retire(s, "web1", "committed"), 0);
    ita_batch(&b, seq, 10, DISK_SIZE, 99, false);
    int rc = ita_send_raw(&a, b.data, b.len); /* the server may have closed already */
    cr_assert(rc == 0 || rc == EPIPE || rc == ECONNRESET, "send: %s", strerror(rc));
    wire_buf_free(&b);
    uint64_t acked = 0;
    for (;;) {
        cr_assert(ita_recv(&a), "closed without ERROR");
        if (a.type == WIRE_T_ACK) {
            char r[160];
            cr_assert_eq(wire_dec_ack(a.body, a.body_len, &acked, r, sizeof r), 0, "%s", r);
            continue;
        }
        cr_assert_eq(a.type, WIRE_T_ERROR, "frame type 0x%x", a.type);
        wire_error_t e;
        char r[160];
        cr_assert_eq(wire_dec_error(a.body, a.body_len, &e, r, sizeof r), 0, "%s", r);
        cr_assert_eq(e.code, WIRE_E_STOPPED, "%s: %s", wire_err_name(e.code), e.text);
        break;
    }
    cr_assert(!ita_recv(&a), "the server sent more after ERROR");
    cr_assert_geq(acked, 50, "the first batch's ACK was taken back");
    cr_assert_lt(acked, seq, "the batch sent after the retirement was acknowledged");
    ita_close(&a);
    its_stop(s);
    cr_assert_eq(journal_end(data, "web1"), acked, "the journal holds other than what was acknowledged");
}

Test(ingest_stop, retire_waits_for_the_batches_in_flight)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "web1", secret, NULL);
    its_opts_t o = {.gated = true};
    its_t *s = its_start(data, &o);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint64_t seq = stream(&a, ita_handshake(&a, "web1", secret, &disk0, 1, NULL), 30, 1);

    /* A batch written to the journal, held before it is durable. */
    its_gate_arm();
    wire_buf_t b = {0};
    ita_batch(&b, seq, 100, DISK_SIZE, 2, true);
    ita_send(&a, &b);
    seq += 100;
    its_gate_wait();

    cr_assert_eq(its_retire(s, "web1", "committed"), 0);
    /* Not closed yet: its batch is not durable. What it sends now is
     * dropped. */
    cr_assert(itx_quiet(&a), "the session was told something before its batch was durable");
    ita_batch(&b, seq, 10, DISK_SIZE, 3, false);
    ita_send(&a, &b);
    wire_buf_free(&b);
    cr_assert(itx_quiet(&a), "the session was answered after its retirement");

    its_gate_open();
    /* The ACK of the held batch, then ERROR stopped. */
    cr_assert(ita_recv(&a), "closed without a word");
    cr_assert_eq(a.type, WIRE_T_ACK, "frame type 0x%x, the ACK expected first", a.type);
    uint64_t acked;
    char r[160];
    cr_assert_eq(wire_dec_ack(a.body, a.body_len, &acked, r, sizeof r), 0, "%s", r);
    cr_assert_eq(acked, seq - 1);
    wire_error_t e;
    itx_expect_error(&a, WIRE_E_STOPPED, &e);
    cr_assert_str_eq(e.text, "committed");
    ita_close(&a);
    its_stop(s);
    cr_assert_eq(journal_end(data, "web1"), seq - 1);
}

Test(ingest_stop, machines_retired_before_the_start_are_refused)
{
    const char *data = data_dir();
    uint8_t secret[32], secret_db[32];
    its_add_machine(data, "web1", secret, NULL);
    its_add_machine(data, "db", secret_db, NULL);
    /* web1 streamed before, so the journal knows it. */
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint64_t wseq = stream(&a, ita_handshake(&a, "web1", secret, &disk0, 1, NULL), 25, 1);
    ita_close(&a);
    its_stop(s);

    const char *retired[] = {"web1", "gone-long-ago"};
    its_opts_t o = {.retired = retired, .nretired = 2};
    s = its_start(data, &o);
    ingest_machine_info_t mi;
    cr_assert_eq(its_machine(s, "web1", &mi), 0);
    cr_assert(mi.retired);
    wire_error_t e;
    hello_auth(&a, its_port(s), "web1", secret);
    itx_expect_error(&a, WIRE_E_STOPPED, &e);
    cr_assert_str_eq(e.text, INGEST_RETIRED_REASON);
    ita_close(&a);
    cr_assert_eq(its_request_stop(s, "web1", 1, "f", "r"), -ENOTCONN);
    /* A retired name known from nowhere else is still a machine to ingest. */
    cr_assert_eq(its_request_stop(s, "gone-long-ago", 1, "f", "r"), -ENOTCONN);
    cr_assert_eq(its_retire(s, "gone-long-ago", "again"), 0);
    /* db streams as ever. */
    ita_connect(&a, its_port(s));
    stream(&a, ita_handshake(&a, "db", secret_db, &disk0, 1, NULL), 25, 2);
    ita_close(&a);
    its_stop(s);
    cr_assert_eq(journal_end(data, "web1"), wseq - 1);
}

Test(ingest_stop, a_bad_retired_name_fails_the_start)
{
    const char *data = data_dir();
    char jdir[4200], err[512];
    snprintf(jdir, sizeof jdir, "%s/journal", data);
    jnl_options_t jo = {0};
    jnl_t *jnl = NULL;
    cr_assert_eq(jnl_open(jdir, &jo, &jnl), 0);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    const char *retired[] = {"ok", "../etc"};
    ingest_options_t io = {.data_dir = data, .listen = "127.0.0.1:0", .retired = retired, .nretired = 2};
    ingest_t *ig = NULL;
    int rc = ingest_start(&loop, jnl, &io, &ig, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL, "%s", tm_errname(rc));
    cr_assert(strstr(err, "../etc"), "%s", err);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    jnl_destroy(jnl);
}
