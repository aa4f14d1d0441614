/*
 * Group rounds from ingest's side (ingest_group_prepare, _commit, _abort):
 * the frames reach the machine's agent, PREPARED comes back to the caller
 * exactly once with the agent's position or reason, and every other way a
 * round can end gives the caller its one answer too: the agent's session
 * ending before it answered, the caller's abort, the server stopping, a
 * machine that cannot cut a point (initial copy, resync, stopped), a round
 * still open. Bad arguments and machines without an agent are refused
 * without an answer, a bad PREPARED body ends the session, a late or
 * unasked PREPARED is ignored.
 *
 * The server runs in this process (its.c), the agents are the blocking
 * wire-codec agent of ita.c over loopback, scripted frame by frame. "Exactly
 * once" is checked after a barrier: a later round's answer, which ingest
 * delivers after every answer queued before it.
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
#include "tests/ingest/itx.h"
#include "tests/ingest/its.h"

TestSuite(ingest_group, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

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

static wire_group_prepare_t expect_prepare(ita_agent_t *a, uint64_t round)
{
    expect_frame(a, WIRE_T_GROUP_PREPARE);
    wire_group_prepare_t m;
    char r[160];
    cr_assert_eq(wire_dec_group_prepare(a->body, a->body_len, &m, r, sizeof r), 0, "%s", r);
    cr_assert_eq(m.round, round);
    return m;
}

static void expect_decision(ita_agent_t *a, uint16_t type, uint64_t round)
{
    expect_frame(a, type);
    uint64_t got;
    char r[160];
    int rc = type == WIRE_T_GROUP_COMMIT ? wire_dec_group_commit(a->body, a->body_len, &got, r, sizeof r)
                                         : wire_dec_group_abort(a->body, a->body_len, &got, r, sizeof r);
    cr_assert_eq(rc, 0, "%s", r);
    cr_assert_eq(got, round);
}

static void send_prepared(ita_agent_t *a, uint64_t round, bool held, uint64_t seq, const char *reason)
{
    wire_prepared_t p = {.round = round, .status = held ? WIRE_PREPARED_HELD : WIRE_PREPARED_FAILED, .seq = seq};
    if (!held)
        snprintf(p.reason, sizeof p.reason, "%s", reason);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_prepared(&b, &p), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
}

/* Records of disk 0 from seq on: n writes, with SYNCED (kind != 0: that
 * record kind, for disk 0) first; returns the next sequence once acked. */
static uint64_t send_records(ita_agent_t *a, uint64_t seq, uint8_t first_kind, unsigned n)
{
    static uint8_t data[4096];
    wire_entry_t e[16];
    unsigned k = 0;
    cr_assert_leq(n, 15);
    if (first_kind)
        e[k++] = (wire_entry_t){.kind = first_kind, .disk = 0};
    for (unsigned i = 0; i < n; i++) {
        memset(data, (int)(seq + i), sizeof data);
        e[k++] = (wire_entry_t){.kind = WIRE_R_WRITE, .disk = 0, .offset = 4096 * (uint64_t)i, .length = 4096,
                                .data = data};
    }
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, seq, e, (uint16_t)k, false), 0);
    ita_send(a, &b);
    wire_buf_free(&b);
    cr_assert_eq(ita_wait_ack(a, seq + k - 1), seq + k - 1);
    return seq + k;
}

/* An agent streaming for machine with disk 0 copied (SYNCED durable). */
static uint64_t synced_agent(ita_agent_t *a, its_t *s, const char *machine, const uint8_t secret[32])
{
    uint64_t seq = ita_reconnect(a, its_port(s), machine, secret, &disk0, 1, NULL);
    return send_records(a, seq, seq == 1 ? WIRE_R_SYNCED : 0, 3);
}

static its_answer_t answer(const char *machine, uint64_t round)
{
    its_answer_t x;
    cr_assert(its_group_wait(machine, round, ITA_WAIT_MS, &x), "no answer to round %llu of %s",
              (unsigned long long)round, machine);
    return x;
}

/* Every answer queued before this one was delivered: answers come in the
 * order ingest made them. machine must have a round open (not answered),
 * so this one is refused at once and never reaches the agent. */
static void barrier(its_t *s, const char *machine, uint64_t round)
{
    cr_assert_eq(its_group_prepare(s, machine, round, WIRE_TAG_CRASH, 1000, "barrier"), 0);
    its_answer_t x = answer(machine, round);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert(strstr(x.reason, "is still open"), "%s", x.reason);
}

/* Poll (bounded) until the server saw the agent of machine go. */
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

Test(ingest_group, prepare_held_commit_and_abort_reach_the_agent)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    uint64_t seq = synced_agent(&a, s, "db1", secret);

    /* crash round 7: held, committed */
    cr_assert_eq(its_group_prepare(s, "db1", 7, WIRE_TAG_CRASH, 100, "grp-7"), 0);
    wire_group_prepare_t m = expect_prepare(&a, 7);
    cr_assert_eq(m.kind, WIRE_TAG_CRASH);
    cr_assert_eq(m.hold_ms, 100);
    cr_assert_str_eq(m.name, "grp-7");
    cr_assert_eq(its_group_commit(s, "db1", 7), TM_EINVAL, "committed before the agent answered");
    send_prepared(&a, 7, true, seq - 1, NULL);
    its_answer_t x = answer("db1", 7);
    cr_assert_eq(x.status, 0);
    cr_assert_eq(x.seq, seq - 1);
    cr_assert_str_eq(x.reason, "");
    cr_assert_eq(its_group_commit(s, "db1", 7), 0);
    expect_decision(&a, WIRE_T_GROUP_COMMIT, 7);
    cr_assert_eq(its_group_commit(s, "db1", 7), TM_EINVAL, "a round is committed once");
    cr_assert_eq(its_group_commit(s, "db1", 8), TM_EINVAL, "never asked");
    /* The agent's group tag is a record like any other. */
    seq = send_records(&a, seq, 0, 2);

    /* app round 9: held, aborted */
    cr_assert_eq(its_group_prepare(s, "db1", 9, WIRE_TAG_APP, WIRE_GROUP_MAX_HOLD_MS, "grp-app-9"), 0);
    m = expect_prepare(&a, 9);
    cr_assert_eq(m.kind, WIRE_TAG_APP);
    cr_assert_eq(m.hold_ms, WIRE_GROUP_MAX_HOLD_MS);
    send_prepared(&a, 9, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 9).status, 0);
    cr_assert_eq(its_group_abort(s, "db1", 9), 0);
    expect_decision(&a, WIRE_T_GROUP_ABORT, 9);
    cr_assert_eq(its_group_commit(s, "db1", 9), TM_EINVAL, "an aborted round is not committed");
    cr_assert_eq(its_group_abort(s, "db1", 9), 0, "aborting again: nothing open, nothing sent");

    /* round 10: the agent fails it with its reason */
    cr_assert_eq(its_group_prepare(s, "db1", 10, WIRE_TAG_APP, 5000, "grp-10"), 0);
    expect_prepare(&a, 10);
    send_prepared(&a, 10, false, 0, "the pre-script exited with status 3");
    x = answer("db1", 10);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert_str_eq(x.reason, "the pre-script exited with status 3");
    cr_assert_eq(its_group_commit(s, "db1", 10), TM_EINVAL);

    cr_assert_eq(its_group_prepare(s, "db1", 11, WIRE_TAG_CRASH, 100, "grp-11"), 0);
    expect_prepare(&a, 11);
    barrier(s, "db1", 12);
    send_prepared(&a, 11, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 11).status, 0);
    cr_assert_eq(its_group_abort(s, "db1", 11), 0);
    expect_decision(&a, WIRE_T_GROUP_ABORT, 11);
    static const uint64_t asked[] = {7, 9, 10, 11, 12};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++)
        cr_assert_eq(its_group_answers("db1", asked[i]), 1, "round %llu answered %u times",
                     (unsigned long long)asked[i], its_group_answers("db1", asked[i]));
    cr_assert_eq(its_group_answers("db1", 8), 0);
    /* nothing else came to the agent, and it streams on */
    cr_assert(itx_quiet(&a));
    send_records(&a, seq, 0, 3);
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, requests_that_cannot_be_sent)
{
    const char *data = data_dir();
    uint8_t secret[32], secret_db[32];
    its_add_machine(data, "web1", secret, NULL);
    its_add_machine(data, "db", secret_db, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    synced_agent(&a, s, "web1", secret);

    char longname[WIRE_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    /* arguments */
    cr_assert_eq(its_group_prepare(s, NULL, 1, WIRE_TAG_CRASH, 100, "g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 100, NULL), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 100, ""), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 100, "../g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 100, longname), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 0, WIRE_TAG_CRASH, 100, "g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_GROUP, 100, "g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, 0, 100, "g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 0, "g"), TM_EINVAL);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, WIRE_GROUP_MAX_HOLD_MS + 1, "g"), TM_EINVAL);
    cr_assert_eq(its_group_commit(s, NULL, 1), TM_EINVAL);
    cr_assert_eq(its_group_commit(s, "web1", 0), TM_EINVAL);
    cr_assert_eq(its_group_abort(s, NULL, 1), TM_EINVAL);
    cr_assert_eq(its_group_abort(s, "web1", 0), TM_EINVAL);
    /* machines */
    cr_assert_eq(its_group_prepare(s, "nope", 1, WIRE_TAG_CRASH, 100, "g"), TM_ENOTFOUND);
    cr_assert_eq(its_group_prepare(s, "..", 1, WIRE_TAG_CRASH, 100, "g"), TM_ENOTFOUND);
    cr_assert_eq(its_group_commit(s, "nope", 1), TM_ENOTFOUND);
    cr_assert_eq(its_group_abort(s, "nope", 1), TM_ENOTFOUND);
    cr_assert_eq(its_group_prepare(s, "db", 1, WIRE_TAG_CRASH, 100, "g"), -ENOTCONN, "registered, never connected");
    cr_assert_eq(its_group_commit(s, "db", 1), -ENOTCONN);
    cr_assert_eq(its_group_abort(s, "db", 1), -ENOTCONN);
    /* connected, not authenticated: not an agent to ask */
    ita_agent_t h;
    ita_connect(&h, its_port(s));
    uint8_t nonce[WIRE_NONCE_LEN];
    ita_hello(&h, "db", &disk0, 1, nonce);
    cr_assert_eq(its_group_prepare(s, "db", 1, WIRE_TAG_CRASH, 100, "g"), -ENOTCONN);
    ita_close(&h);
    /* retired */
    cr_assert_eq(its_retire(s, "web1", "failover committed"), 0);
    wire_error_t e;
    itx_expect_error(&a, WIRE_E_STOPPED, &e);
    ita_close(&a);
    cr_assert_eq(its_group_prepare(s, "web1", 1, WIRE_TAG_CRASH, 100, "g"), -ENOTCONN);
    cr_assert_eq(its_group_all_answers(), 0, "a refused call was answered");
    its_stop(s);
    cr_assert_eq(its_group_all_answers(), 0);
}

Test(ingest_group, the_session_ending_before_prepared_answers_once)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    uint64_t seq = synced_agent(&a, s, "db1", secret);
    cr_assert_eq(its_group_prepare(s, "db1", 3, WIRE_TAG_CRASH, 100, "g3"), 0);
    expect_prepare(&a, 3);
    ita_close(&a);
    its_answer_t x = answer("db1", 3);
    cr_assert_eq(x.status, -ECONNRESET);
    cr_assert_str_eq(x.reason, "disconnected");
    wait_gone(s, "db1");
    cr_assert_eq(its_group_commit(s, "db1", 3), -ENOTCONN);

    /* The next session: a PREPARED of the old round on it is not asked for
     * and changes nothing; a new round works. */
    seq = synced_agent(&a, s, "db1", secret);
    send_prepared(&a, 3, true, seq - 1, NULL);
    cr_assert_eq(its_group_prepare(s, "db1", 4, WIRE_TAG_CRASH, 100, "g4"), 0);
    expect_prepare(&a, 4);
    send_prepared(&a, 4, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 4).status, 0);

    /* Held, then the session ends: the agent released; nothing to commit. */
    ita_close(&a);
    wait_gone(s, "db1");
    cr_assert_eq(its_group_commit(s, "db1", 4), -ENOTCONN);
    seq = synced_agent(&a, s, "db1", secret);
    cr_assert_eq(its_group_commit(s, "db1", 4), TM_EINVAL, "the held round went with its session");
    cr_assert_eq(its_group_abort(s, "db1", 4), 0);
    cr_assert(itx_quiet(&a), "the new session was sent a decision of an old round");

    cr_assert_eq(its_group_prepare(s, "db1", 5, WIRE_TAG_CRASH, 100, "g5"), 0);
    expect_prepare(&a, 5);
    barrier(s, "db1", 6);
    cr_assert_eq(its_group_answers("db1", 3), 1);
    cr_assert_eq(its_group_answers("db1", 4), 1);
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, abort_before_the_answer_answers_at_once_and_drops_the_late_one)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    uint64_t seq = synced_agent(&a, s, "db1", secret);
    cr_assert_eq(its_group_prepare(s, "db1", 20, WIRE_TAG_CRASH, 100, "g20"), 0);
    expect_prepare(&a, 20);
    cr_assert_eq(its_group_abort(s, "db1", 20), 0);
    its_answer_t x = answer("db1", 20);
    cr_assert_eq(x.status, -ECANCELED);
    expect_decision(&a, WIRE_T_GROUP_ABORT, 20);
    /* the agent's answer crosses the abort */
    send_prepared(&a, 20, true, seq - 1, NULL);
    cr_assert_eq(its_group_commit(s, "db1", 20), TM_EINVAL);
    seq = send_records(&a, seq, 0, 1);
    cr_assert_eq(its_group_prepare(s, "db1", 21, WIRE_TAG_CRASH, 100, "g21"), 0);
    expect_prepare(&a, 21);
    barrier(s, "db1", 22);
    cr_assert_eq(its_group_answers("db1", 20), 1);
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, one_round_at_a_time_per_machine)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    uint64_t seq = synced_agent(&a, s, "db1", secret);

    cr_assert_eq(its_group_prepare(s, "db1", 30, WIRE_TAG_CRASH, WIRE_GROUP_MAX_HOLD_MS, "g30"), 0);
    expect_prepare(&a, 30);
    /* while the agent has not answered */
    cr_assert_eq(its_group_prepare(s, "db1", 31, WIRE_TAG_CRASH, 100, "g31"), 0);
    its_answer_t x = answer("db1", 31);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert(strstr(x.reason, "group round 30 is still open"), "%s", x.reason);
    /* while held, undecided */
    send_prepared(&a, 30, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 30).status, 0);
    cr_assert_eq(its_group_prepare(s, "db1", 32, WIRE_TAG_CRASH, 100, "g32"), 0);
    x = answer("db1", 32);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert(strstr(x.reason, "held, neither committed nor aborted"), "%s", x.reason);
    cr_assert_eq(its_group_commit(s, "db1", 30), 0);
    expect_decision(&a, WIRE_T_GROUP_COMMIT, 30);
    /* decided: the next one goes to the agent */
    cr_assert_eq(its_group_prepare(s, "db1", 33, WIRE_TAG_CRASH, 1, "g33"), 0);
    expect_prepare(&a, 33);
    send_prepared(&a, 33, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 33).status, 0);
    /* A held round whose 1 ms hold limit passed is over at the agent (it
     * released by itself): undecided, it does not block the next. The
     * limit is time, so time passes here. */
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cr_assert_eq(its_group_prepare(s, "db1", 34, WIRE_TAG_CRASH, 100, "g34"), 0);
    expect_prepare(&a, 34);
    /* 33 is over here: not to be committed */
    cr_assert_eq(its_group_commit(s, "db1", 33), TM_EINVAL, "33 was replaced by 34 here");
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, machines_that_cannot_cut_a_point_are_refused_with_a_reason)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    ita_connect(&a, its_port(s));
    uint64_t seq = ita_handshake(&a, "db1", secret, &disk0, 1, NULL);
    /* writes, but the disk's initial copy is not complete */
    seq = send_records(&a, seq, 0, 3);
    cr_assert_eq(its_group_prepare(s, "db1", 1, WIRE_TAG_CRASH, 100, "g1"), 0);
    its_answer_t x = answer("db1", 1);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert(strstr(x.reason, "disk disk0: its initial copy is not complete: no consistent point can be cut"),
              "%s", x.reason);
    /* copied: a round goes to the agent */
    seq = send_records(&a, seq, WIRE_R_SYNCED, 1);
    cr_assert_eq(its_group_prepare(s, "db1", 2, WIRE_TAG_CRASH, 100, "g2"), 0);
    expect_prepare(&a, 2);
    send_prepared(&a, 2, true, seq - 1, NULL);
    cr_assert_eq(answer("db1", 2).status, 0);
    cr_assert_eq(its_group_abort(s, "db1", 2), 0);
    expect_decision(&a, WIRE_T_GROUP_ABORT, 2);
    /* a resync opens */
    seq = send_records(&a, seq, WIRE_R_RESYNC, 2);
    cr_assert_eq(its_group_prepare(s, "db1", 3, WIRE_TAG_CRASH, 100, "g3"), 0);
    x = answer("db1", 3);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert(strstr(x.reason, "disk disk0: its resync is running: no consistent point can be cut"), "%s",
              x.reason);
    seq = send_records(&a, seq, WIRE_R_SYNCED, 1);
    /* stopped: the STOP's final tag is the point */
    cr_assert_eq(its_request_stop(s, "db1", 40, "final-40", "planned failover"), 0);
    expect_frame(&a, WIRE_T_STOP);
    cr_assert_eq(its_group_prepare(s, "db1", 4, WIRE_TAG_CRASH, 100, "g4"), 0);
    x = answer("db1", 4);
    cr_assert_eq(x.status, TM_EFAILED);
    cr_assert_str_eq(x.reason, "stopped");
    cr_assert_eq(its_request_resume(s, "db1"), 0);
    expect_frame(&a, WIRE_T_RESUME);
    cr_assert_eq(its_group_prepare(s, "db1", 5, WIRE_TAG_CRASH, 100, "g5"), 0);
    expect_prepare(&a, 5);
    cr_assert(itx_quiet(&a), "refused rounds reached the agent");
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, bad_and_unasked_prepared)
{
    const char *data = data_dir();
    uint8_t secret[32];
    its_add_machine(data, "db1", secret, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a;
    uint64_t seq = synced_agent(&a, s, "db1", secret);
    /* unasked: ignored, the session streams on */
    send_prepared(&a, 99, true, 5, NULL);
    send_prepared(&a, 98, false, 0, "why not");
    seq = send_records(&a, seq, 0, 1);
    cr_assert_eq(its_group_all_answers(), 0);
    /* malformed: a held round with a reason */
    wire_buf_t b = {0};
    size_t f = wire_frame_begin(&b, WIRE_T_PREPARED);
    wire_put_u64(&b, 1);
    wire_put_u8(&b, WIRE_PREPARED_HELD);
    wire_put_u64(&b, 5);
    wire_put_str(&b, "but why");
    cr_assert_eq(wire_frame_end(&b, f), 0);
    ita_send(&a, &b);
    wire_buf_free(&b);
    wire_error_t e;
    itx_expect_error(&a, WIRE_E_PROTOCOL, &e);
    cr_assert(strstr(e.text, "reason"), "%s", e.text);
    ita_close(&a);
    its_stop(s);
}

Test(ingest_group, the_server_stopping_answers_what_it_owes)
{
    const char *data = data_dir();
    uint8_t secret[32], secret2[32];
    its_add_machine(data, "db1", secret, NULL);
    its_add_machine(data, "db2", secret2, NULL);
    its_t *s = its_start(data, NULL);
    ita_agent_t a, b;
    synced_agent(&a, s, "db1", secret);
    uint64_t seq2 = synced_agent(&b, s, "db2", secret2);
    cr_assert_eq(its_group_prepare(s, "db1", 50, WIRE_TAG_CRASH, 100, "g50"), 0);
    cr_assert_eq(its_group_prepare(s, "db2", 50, WIRE_TAG_CRASH, 100, "g50"), 0);
    expect_prepare(&a, 50);
    expect_prepare(&b, 50);
    send_prepared(&b, 50, true, seq2 - 1, NULL);
    cr_assert_eq(answer("db2", 50).status, 0);
    its_stop(s);
    its_answer_t x;
    cr_assert(its_group_wait("db1", 50, 0, &x), "the owed answer was not delivered by the stop");
    cr_assert_eq(x.status, -ECANCELED);
    cr_assert_str_eq(x.reason, "the server is stopping");
    cr_assert_eq(its_group_answers("db1", 50), 1);
    cr_assert_eq(its_group_answers("db2", 50), 1);
    ita_close(&a);
    ita_close(&b);
}
