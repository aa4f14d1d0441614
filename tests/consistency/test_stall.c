/*
 * The "a member that stalls or crashes during a round", with the
 * real binaries: `tidemark serve` with a group of two machines, a replay
 * agent process for each, the API (libcurl).
 *
 *  - Stalled: one agent is stopped (SIGSTOP: its session stays open, it
 *    just answers nothing). The rounds that start then abort at their hold
 *    limit with a reason naming it; none becomes a group point, and no
 *    group tag of them reaches the other member's stream; the other
 *    member's writes keep arriving and its own points keep coming; its
 *    agent never held longer than the limit. Once the agent runs again
 *    (SIGCONT) rounds are recorded again.
 *  - Killed: with one agent stopped, a round is asked for and the other
 *    member is held; then the stopped agent is killed (SIGKILL): the round
 *    aborts at once (before its limit), naming it, the other member's
 *    writes resume, no group point; a new agent for it makes the next
 *    round a group point.
 *
 * Waits poll the API with a deadline; every child's output is drained
 * while waiting.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "tests/agent/at.h"
#include "tests/consistency/ct.h"

#define WAIT_MS 30000
#define HOLD_MS 100
/* The coordinator aborts a round it cannot commit 10 ms before the limit
 * (twice the margin, wire.h) and an agent acts on the limit itself 5 ms
 * before it, so a hold stays within the limit with the loop's usual timer
 * latency (seen up to 4.3 ms under the sanitizers). A member that waited
 * for the stalled one would hold for seconds. */
TestSuite(stall, .init = at_setup, .fini = at_teardown, .timeout = 120);

static at_child_t srv, a1, a2;

/* Read what the children wrote so far, so none blocks on a full pipe. */
static void drain(void)
{
    at_child_t *all[] = {&srv, &a1, &a2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]->out)
            at_has(all[i], true, "\x01");
}

/* Between two looks at a state, with a deadline (never a synchronization
 * by itself). */
static void pause_ms(long ms)
{
    drain();
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t deadline(void)
{
    return tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
}

static void write_conf(const char *conf, const char *every, unsigned hold_ms)
{
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f, "group.shop = m1, m2\ngroup.shop.crash_every = %s\ngroup.shop.hold = %ums\n", every, hold_ms);
    fclose(f);
}

static void start_replay(at_child_t *c, const char *machine, const char *secret, unsigned seed)
{
    char spec[160];
    snprintf(spec, sizeof spec, "disks=1,size=8M,rate=2M,bs=4k:70,64k:30,duration=300,seed=%u", seed);
    at_spawn(c, (const char *[]){"agent", "replay", "--server", ct_agents, "--machine", machine, "--secret-file",
                                 secret, "--workload", spec, NULL});
}

/* The group as GET /v1/groups shows it (a new reference). */
static json_t *group(void)
{
    json_t *g = ct_get_ok("/v1/groups");
    json_t *one = json_incref(json_array_get(json_object_get(g, "groups"), 0));
    cr_assert_not_null(one, "%s", json_dumps(g, 0));
    json_decref(g);
    return one;
}

static json_int_t count(const json_t *g, const char *what)
{
    return json_integer_value(json_object_get(json_object_get(g, "rounds"), what));
}

static uint64_t round_id(const json_t *r)
{
    return strtoull(json_string_value(json_object_get(r, "id")), NULL, 10);
}

static const char *round_state(const json_t *r)
{
    return json_string_value(json_object_get(r, "state"));
}

/* The round of id in the group's history (borrowed), or NULL. */
static json_t *history_round(const json_t *g, uint64_t id)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(g, "history"), i, r)
    {
        if (round_id(r) == id)
            return r;
    }
    return NULL;
}

/* A member's PREPARED position in round r, 0 when it was not held. */
static uint64_t held_at(const json_t *r, const char *machine)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r, "members"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "machine")), machine) == 0)
            return (uint64_t)json_integer_value(json_object_get(m, "seq"));
    }
    return 0;
}

/* GET /v1/machines: machine's received_seq and its latest point's seq. */
static void machine_seqs(const char *machine, uint64_t *received, uint64_t *latest, bool *connected)
{
    json_t *ms = ct_get_ok("/v1/machines");
    size_t i;
    json_t *m;
    bool found = false;
    json_array_foreach(json_object_get(ms, "machines"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "name")), machine) != 0)
            continue;
        found = true;
        if (received)
            *received = (uint64_t)json_integer_value(json_object_get(m, "received_seq"));
        if (latest)
            *latest = (uint64_t)json_integer_value(json_object_get(json_object_get(m, "latest_point"), "seq"));
        if (connected)
            *connected = json_is_true(json_object_get(m, "connected")) &&
                         strcmp(json_string_value(json_object_get(m, "state")), "protected") == 0;
    }
    cr_assert(found, "no machine %s in %s", machine, json_dumps(ms, 0));
    json_decref(ms);
}

/* Whether the group's list has a group point of round id. */
static bool group_point(uint64_t id, json_t **out)
{
    json_t *gp = ct_get_ok("/v1/groups/shop/points?limit=1000");
    size_t i;
    json_t *p;
    bool hit = false;
    json_array_foreach(json_object_get(gp, "points"), i, p)
    {
        if (strtoull(json_string_value(json_object_get(p, "round")), NULL, 10) == id) {
            hit = true;
            if (out)
                *out = json_incref(p);
        }
    }
    json_decref(gp);
    return hit;
}

/* Whether machine's point list has a point tagged for round id (the group
 * tag's name is "group-ID" or "group-app-ID"). */
static bool member_tagged(const char *machine, uint64_t id)
{
    char path[128], tag[64];
    snprintf(path, sizeof path, "/v1/machines/%s/points?limit=100000", machine);
    snprintf(tag, sizeof tag, "group-%" PRIu64, id);
    json_t *pts = ct_get_ok(path);
    size_t i;
    json_t *p;
    bool hit = false;
    json_array_foreach(json_object_get(pts, "points"), i, p)
    {
        const char *t = json_string_value(json_object_get(p, "tag"));
        hit |= t && strcmp(t, tag) == 0;
    }
    json_decref(pts);
    return hit;
}

/* Whether id was seen before (for printing each aborted round once). */
static bool seen(uint64_t id)
{
    static uint64_t ids[64];
    static unsigned n;
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    if (n < 64)
        ids[n++] = id;
    return false;
}

/* Wait until kill(SIGSTOP) took: the process is stopped (state T). */
static void wait_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    uint64_t dl = deadline();
    for (;;) {
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        char buf[512] = "";
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't'))
            return;
        cr_assert_lt(tm_mono_ns(), dl, "process %d never stopped: %s", (int)pid, buf);
        pause_ms(1);
    }
}

/* Wait until both members stream and are protected. */
static void wait_protected(void)
{
    uint64_t dl = deadline();
    for (;;) {
        bool c1 = false, c2 = false;
        machine_seqs("m1", NULL, NULL, &c1);
        machine_seqs("m2", NULL, NULL, &c2);
        if (c1 && c2)
            return;
        cr_assert_lt(tm_mono_ns(), dl, "the members never both streamed");
        pause_ms(20);
    }
}

/* Wait until a round that started after t (wall clock, ns) is recorded;
 * its id. */
static uint64_t wait_recorded_after(uint64_t t)
{
    uint64_t dl = deadline();
    for (;;) {
        json_t *g = group();
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(g, "history"), i, r)
        {
            if (round_id(r) > t && strcmp(round_state(r), "recorded") == 0) {
                uint64_t id = round_id(r);
                json_decref(g);
                return id;
            }
        }
        cr_assert_lt(tm_mono_ns(), dl, "no round recorded: %s", json_dumps(g, 0));
        json_decref(g);
        pause_ms(50);
    }
}

/* Ask for rounds until one is recorded (one at a time; an early one may
 * abort while a new agent settles); its id. */
static uint64_t round_until_recorded(void)
{
    uint64_t dl = deadline();
    for (;;) {
        json_t *j;
        long st = ct_http("/v1/groups/shop/rounds", "{}", &j);
        cr_assert(st == 202 || st == 409, "%ld %s", st, json_dumps(j, 0));
        uint64_t id = st == 202 ? strtoull(json_string_value(json_object_get(json_object_get(j, "round"), "id")),
                                           NULL, 10)
                                : 0;
        json_decref(j);
        while (id) {
            json_t *g = group();
            json_t *r = history_round(g, id);
            cr_assert_not_null(r, "round %" PRIu64 " is not in %s", id, json_dumps(g, 0));
            const char *s = round_state(r);
            bool recorded = strcmp(s, "recorded") == 0;
            bool over = recorded || strcmp(s, "aborted") == 0 || strcmp(s, "unrecorded") == 0;
            if (over && !recorded)
                fprintf(stderr, "round %" PRIu64 " %s: %s\n", id, s,
                        json_string_value(json_object_get(r, "reason")));
            cr_assert_lt(tm_mono_ns(), dl, "no round recorded: %s", json_dumps(g, 0));
            json_decref(g);
            if (recorded)
                return id;
            if (over)
                break;
            pause_ms(20);
        }
        cr_assert_lt(tm_mono_ns(), dl, "no round recorded");
        pause_ms(20);
    }
}

/* An agent's round counts and longest hold, from its summary at its end
 * ("group rounds: N committed, N aborted, N timed out, N failed; hold p50
 * X ms, p99 Y ms, max Z ms"). */
typedef struct summary {
    unsigned committed, aborted, timed_out, failed;
    double p50_ms, p99_ms, max_ms;
} summary_t;

static summary_t agent_summary(at_child_t *c, const char *machine)
{
    kill(c->pid, SIGTERM);
    at_finish(c, WAIT_MS);
    const char *p = strstr(c->err, "group rounds: ");
    cr_assert_not_null(p, "no round summary in:\n%s", c->err);
    summary_t s;
    int n = sscanf(p, "group rounds: %u committed, %u aborted, %u timed out, %u failed; hold p50 %lf ms, p99 %lf ms, "
                   "max %lf ms",
                   &s.committed, &s.aborted, &s.timed_out, &s.failed, &s.p50_ms, &s.p99_ms, &s.max_ms);
    cr_assert_eq(n, 7, "cannot read: %s", p);
    fprintf(stderr, "%s: %.*s\n", machine, (int)strcspn(p, "\n"), p);
    return s;
}

Test(stall, a_stalled_member_aborts_rounds_naming_it_while_the_other_streams_on)
{
    const char *data = at_path("data");
    char s1[512], s2[512], conf[512];
    snprintf(s1, sizeof s1, "%s", at_path("s1"));
    snprintf(s2, sizeof s2, "%s", at_path("s2"));
    snprintf(conf, sizeof conf, "%s", at_path("tm.conf"));
    at_machine_add(data, "m1", s1);
    at_machine_add(data, "m2", s2);
    write_conf(conf, "1s", HOLD_MS);
    ct_serve(&srv, data, conf);
    start_replay(&a1, "m1", s1, 1);
    start_replay(&a2, "m2", s2, 2);
    wait_recorded_after(0);

    /* m2's agent stops answering; its session stays */
    kill(a2.pid, SIGSTOP);
    wait_stopped(a2.pid);
    uint64_t t_stop = tm_now_ns();
    uint64_t m1_recv0, m1_latest0;
    machine_seqs("m1", &m1_recv0, &m1_latest0, NULL);

    /* the rounds that start now abort, naming m2; none is committed */
    enum { STALLED_ROUNDS = 3 };
    uint64_t aborted[STALLED_ROUNDS], m1_at[STALLED_ROUNDS], m1_held = 0;
    unsigned naborted = 0;
    uint64_t dl = deadline();
    while (naborted < STALLED_ROUNDS) {
        cr_assert_lt(tm_mono_ns(), dl, "fewer than %d rounds aborted with m2 stopped", STALLED_ROUNDS);
        pause_ms(50);
        json_t *g = group();
        size_t i;
        json_t *r;
        naborted = 0;
        json_array_foreach(json_object_get(g, "history"), i, r)
        {
            if (round_id(r) <= t_stop)
                continue;
            const char *st = round_state(r);
            cr_assert(strcmp(st, "committed") != 0 && strcmp(st, "recorded") != 0,
                      "round %s went ahead with m2 stopped: %s", json_string_value(json_object_get(r, "id")),
                      json_dumps(r, 0));
            if (strcmp(st, "aborted") != 0 || naborted == STALLED_ROUNDS)
                continue;
            const char *why = json_string_value(json_object_get(r, "reason"));
            cr_assert(why && strstr(why, "m2"), "the reason does not name m2: %s", json_dumps(r, 0));
            if (!seen(round_id(r)))
                fprintf(stderr, "round %" PRIu64 " aborted: %s\n", round_id(r), why);
            m1_at[naborted] = held_at(r, "m1");
            aborted[naborted++] = round_id(r);
            if (m1_at[naborted - 1] > m1_held)
                m1_held = m1_at[naborted - 1];
        }
        json_decref(g);
    }
    /* m1 was released after each (the history is newest first): where it
     * was held in two of them, it wrote in between */
    for (unsigned k = 0; k + 1 < STALLED_ROUNDS; k++)
        if (m1_at[k] && m1_at[k + 1])
            cr_assert_gt(m1_at[k], m1_at[k + 1], "m1 wrote nothing between rounds %" PRIu64 " and %" PRIu64,
                         aborted[k + 1], aborted[k]);
    /* none is a group point, and m1's stream has no tag of any */
    for (unsigned k = 0; k < STALLED_ROUNDS; k++) {
        cr_assert(!group_point(aborted[k], NULL), "aborted round %" PRIu64 " is a group point", aborted[k]);
        cr_assert(!member_tagged("m1", aborted[k]), "aborted round %" PRIu64 " left a group tag in m1's stream",
                  aborted[k]);
    }
    /* m1's writes go on after each hold, and so do its own points */
    uint64_t m1_recv = 0, m1_latest = 0;
    dl = deadline();
    for (;;) {
        machine_seqs("m1", &m1_recv, &m1_latest, NULL);
        if (m1_recv > m1_recv0 + 50 && m1_recv > m1_held + 50 && m1_latest > m1_latest0)
            break;
        cr_assert_lt(tm_mono_ns(), dl,
                     "m1 stopped streaming with m2 stalled: received %" PRIu64 " (%" PRIu64 " at the stall, held at "
                     "%" PRIu64 "), latest point %" PRIu64 " (%" PRIu64 ")",
                     m1_recv, m1_recv0, m1_held, m1_latest, m1_latest0);
        pause_ms(50);
    }
    json_t *g = group();
    cr_assert_geq(count(g, "aborted"), STALLED_ROUNDS);
    json_decref(g);

    /* m2's agent runs again: rounds are group points again */
    uint64_t t_cont = tm_now_ns();
    kill(a2.pid, SIGCONT);
    uint64_t id = wait_recorded_after(t_cont);
    json_t *p = NULL;
    cr_assert(group_point(id, &p), "round %" PRIu64 " is recorded but not in the group's list", id);
    cr_assert(json_is_true(json_object_get(p, "whole")), "%s", json_dumps(p, 0));
    cr_assert_eq(json_array_size(json_object_get(p, "members")), 2);
    json_decref(p);
    cr_assert(member_tagged("m1", id) && member_tagged("m2", id));

    /* m1's agent held every round, the aborted ones too, within the limit */
    summary_t m1 = agent_summary(&a1, "m1");
    cr_assert_geq(m1.committed, 2);
    cr_assert_geq(m1.aborted + m1.timed_out, 1, "m1 held none of the rounds m2 stalled");
    cr_assert_leq(m1.max_ms, HOLD_MS, "m1 held for %.1f ms, over the %d ms limit", m1.max_ms, HOLD_MS);
    agent_summary(&a2, "m2");
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
}

Test(stall, a_member_killed_in_the_middle_of_a_round_aborts_it)
{
    const char *data = at_path("data");
    char s1[512], s2[512], conf[512];
    snprintf(s1, sizeof s1, "%s", at_path("s1"));
    snprintf(s2, sizeof s2, "%s", at_path("s2"));
    snprintf(conf, sizeof conf, "%s", at_path("tm.conf"));
    at_machine_add(data, "m1", s1);
    at_machine_add(data, "m2", s2);
    /* rounds on request only, with a limit long enough to kill a member in
     * the middle of one */
    enum { LONG_HOLD_MS = 10000 };
    write_conf(conf, "off", LONG_HOLD_MS);
    ct_serve(&srv, data, conf);
    start_replay(&a1, "m1", s1, 1);
    start_replay(&a2, "m2", s2, 2);
    wait_protected();

    /* m2 stops answering; a round is asked for and m1 is held in it */
    kill(a2.pid, SIGSTOP);
    wait_stopped(a2.pid);
    json_t *j;
    long st = ct_http("/v1/groups/shop/rounds", "{}", &j);
    cr_assert_eq(st, 202, "%ld %s", st, json_dumps(j, 0));
    uint64_t id = strtoull(json_string_value(json_object_get(json_object_get(j, "round"), "id")), NULL, 10);
    json_decref(j);
    uint64_t m1_held = 0;
    uint64_t dl = deadline();
    for (;;) {
        json_t *g = group();
        json_t *r = history_round(g, id);
        cr_assert_not_null(r, "round %" PRIu64 " is not in %s", id, json_dumps(g, 0));
        cr_assert_str_eq(round_state(r), "preparing", "%s", json_dumps(r, 0));
        m1_held = held_at(r, "m1");
        json_decref(g);
        if (m1_held)
            break;
        cr_assert_lt(tm_mono_ns(), dl, "m1 was never held");
        pause_ms(5);
    }

    /* m2's agent dies in the middle of the round: it aborts at once, naming m2 */
    at_kill(&a2, SIGKILL);
    dl = deadline();
    json_t *r = NULL;
    for (;;) {
        json_t *g = group();
        r = json_incref(history_round(g, id));
        json_decref(g);
        cr_assert_not_null(r);
        if (strcmp(round_state(r), "preparing") != 0)
            break;
        json_decref(r);
        cr_assert_lt(tm_mono_ns(), dl, "round %" PRIu64 " never ended", id);
        pause_ms(5);
    }
    cr_assert_str_eq(round_state(r), "aborted", "%s", json_dumps(r, 0));
    const char *why = json_string_value(json_object_get(r, "reason"));
    cr_assert(why && strstr(why, "m2"), "the reason does not name m2: %s", json_dumps(r, 0));
    double round_ms = json_real_value(json_object_get(r, "round_ms"));
    cr_assert_lt(round_ms, LONG_HOLD_MS, "the round waited for its limit: %s", json_dumps(r, 0));
    fprintf(stderr, "round %" PRIu64 " aborted after %.1f ms: %s\n", id, round_ms, why);
    json_decref(r);

    /* m1 writes on; the round is no group point and left no tag */
    dl = deadline();
    for (;;) {
        uint64_t recv = 0;
        machine_seqs("m1", &recv, NULL, NULL);
        if (recv > m1_held + 50)
            break;
        cr_assert_lt(tm_mono_ns(), dl, "m1 wrote nothing after the abort: received %" PRIu64 ", held at %" PRIu64,
                     recv, m1_held);
        pause_ms(20);
    }
    cr_assert(!group_point(id, NULL));
    cr_assert(!member_tagged("m1", id), "the aborted round left a group tag in m1's stream");

    /* a new agent for m2: the next round is a group point */
    at_child_free(&a2);
    start_replay(&a2, "m2", s2, 2);
    wait_protected();
    uint64_t next = round_until_recorded();
    cr_assert(group_point(next, NULL), "round %" PRIu64 " is recorded but not in the group's list", next);
    /* m1 was released when the round aborted, not at its limit */
    summary_t m1 = agent_summary(&a1, "m1");
    cr_assert_geq(m1.aborted, 1);
    cr_assert_lt(m1.max_ms, LONG_HOLD_MS / 4, "m1 held for %.1f ms (the limit: %d ms)", m1.max_ms, LONG_HOLD_MS);
    at_kill(&a2, SIGKILL);
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
}
