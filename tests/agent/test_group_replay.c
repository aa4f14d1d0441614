/*
 * Group rounds at replay agents embedded in the test process (arp.c),
 * streaming to the real ingest server and journal in this process (its.c),
 * which asks for the rounds (ingest_group_prepare, _commit, _abort) as the
 * consistency coordinator does.
 *
 * A replay agent's held "writes" are its generator paused: the group tag
 * is the very next record after the position its PREPARED named, in the
 * journal; an aborted round or one past its hold limit leaves no tag, and
 * a COMMIT after the limit changes nothing; an app round runs the scripts
 * in order; each agent's stats count every round with its hold time, and
 * the hold limit bounds it, even when the agents' loop is blocked past it
 * (released at the loop's first chance, counted as late, the COMMIT that
 * came meanwhile ignored). A group of 100 machines completes rounds.
 *
 * Workloads are seeded (the seed is printed); waits are for answers,
 * acknowledgements and states, bounded.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "tests/agent/arp.h"
#include "tests/agent/at.h"
#include "tests/ingest/its.h"
#include "tests/support/tmt.h"
#include "wire/msg.h"

#define WAIT_MS 60000
#define MAXM 100

static its_t *srv;
static arp_t *agents;
static char names[MAXM][WIRE_MAX_NAME + 1];
static const char *namep[MAXM];
static uint8_t secrets[MAXM][AGENT_SECRET_LEN];

static void setup(void)
{
    at_setup();
}

static void teardown(void)
{
    if (agents)
        arp_stop(agents);
    agents = NULL;
    if (srv)
        its_stop(srv);
    srv = NULL;
    at_teardown();
}

TestSuite(agent_group_replay, .init = setup, .fini = teardown, .timeout = 280);

static uint64_t seed(void)
{
    uint64_t s = tmt_env_u64("TIDEMARK_GROUP_SEED", 0x67727570u);
    fprintf(stderr, "seed %" PRIu64 " (TIDEMARK_GROUP_SEED)\n", s);
    return s;
}

/* n machines m0..m<n-1> registered, the server up, the agents streaming
 * with workload (a rate: the generator runs all along), each protected. */
static void start(unsigned n, const char *workload, const char *pre, const char *post)
{
    const char *data = at_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    for (unsigned i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "m%u", i);
        namep[i] = names[i];
        its_add_machine(data, names[i], secrets[i], NULL);
    }
    srv = its_start(data, NULL);
    arp_opts_t o = {.server = its_addr(srv), .n = n, .machines = namep, .secrets = (const uint8_t(*)[32])secrets,
                    .workload = workload, .seed = seed(), .pre_script = pre, .post_script = post};
    agents = arp_start(&o);
    uint64_t deadline = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    for (unsigned i = 0; i < n; i++) {
        ingest_machine_info_t mi = {0};
        while (its_machine(srv, names[i], &mi) != 0 || !mi.connected || mi.state != INGEST_MACHINE_PROTECTED) {
            cr_assert_lt(tm_mono_ns(), deadline, "machine %s never streamed, protected", names[i]);
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL); /* polling a state, with a deadline */
        }
    }
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return strcpy(buf, "(no file)");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* ---- rounds through ingest, many machines per loop turn ---- */

typedef struct many {
    unsigned n;
    uint64_t round;
    uint8_t kind;
    uint32_t hold_ms;
    const char *name;
    int rc[MAXM];
} many_t;

static int prepare_many(ingest_t *ig, void *arg)
{
    many_t *m = arg;
    for (unsigned i = 0; i < m->n; i++)
        m->rc[i] = ingest_group_prepare(ig, names[i], m->round, m->kind, m->hold_ms, m->name, its_group_on_prepared,
                                        NULL);
    return 0;
}

static int commit_many(ingest_t *ig, void *arg)
{
    many_t *m = arg;
    for (unsigned i = 0; i < m->n; i++)
        m->rc[i] = ingest_group_commit(ig, names[i], m->round);
    return 0;
}

/* Prepare round on machines 0..n-1; every answer held; the positions into seq. */
static void prepare_all(unsigned n, uint64_t round, uint8_t kind, uint32_t hold_ms, uint64_t *seq)
{
    char name[32];
    snprintf(name, sizeof name, "grp-%" PRIu64, round);
    many_t m = {.n = n, .round = round, .kind = kind, .hold_ms = hold_ms, .name = name};
    its_call(srv, prepare_many, &m);
    for (unsigned i = 0; i < n; i++) {
        cr_assert_eq(m.rc[i], 0, "prepare %s: %s", names[i], tm_strerror(m.rc[i]));
        its_answer_t x;
        cr_assert(its_group_wait(names[i], round, WAIT_MS, &x), "no answer from %s for round %" PRIu64, names[i],
                  round);
        cr_assert_eq(x.status, 0, "%s round %" PRIu64 ": %s (%s)", names[i], round, tm_strerror(x.status), x.reason);
        seq[i] = x.seq;
    }
}

static void commit_all(unsigned n, uint64_t round)
{
    many_t m = {.n = n, .round = round};
    its_call(srv, commit_many, &m);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(m.rc[i], 0, "commit %s: %s", names[i], tm_strerror(m.rc[i]));
}

/* Poll (bounded) until agent i's stats say cond. */
#define WAIT_STATS(i, st, cond)                                                                                \
    do {                                                                                                       \
        uint64_t dl_ = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;                                            \
        for (;;) {                                                                                             \
            arp_stats(agents, (i), &(st));                                                                     \
            if (cond)                                                                                          \
                break;                                                                                         \
            cr_assert_lt(tm_mono_ns(), dl_, "agent %u never got to: %s", (unsigned)(i), #cond);               \
            struct timespec ts_ = {0, 5 * 1000 * 1000};                                                        \
            nanosleep(&ts_, NULL); /* polling the agent's state, with a deadline */                           \
        }                                                                                                      \
    } while (0)

/* ---- the journal ---- */

#define MAXT 16

typedef struct mtags {
    unsigned ntags;
    uint64_t id[MAXT], seq[MAXT];
    uint64_t last_write_before[MAXT]; /* the last write, zero or trim before the tag */
    char name[MAXT][WIRE_MAX_NAME + 1];
    uint64_t last_write, last_seq;
} mtags_t;

static mtags_t *jt;
static unsigned jn;

static void collect(const char *machine, uint64_t seq, const wire_entry_t *e, void *arg)
{
    (void)arg;
    if (machine[0] != 'm')
        return;
    unsigned i = (unsigned)atoi(machine + 1);
    cr_assert_lt(i, jn);
    mtags_t *t = &jt[i];
    t->last_seq = seq;
    if (e->kind == WIRE_R_WRITE || e->kind == WIRE_R_ZERO || e->kind == WIRE_R_TRIM) {
        t->last_write = seq;
    } else if (e->kind == WIRE_R_TAG && e->tag_kind == WIRE_TAG_GROUP) {
        cr_assert_lt(t->ntags, MAXT);
        unsigned k = t->ntags++;
        t->id[k] = e->id;
        t->seq[k] = seq;
        t->last_write_before[k] = t->last_write;
        memcpy(t->name[k], e->data, e->length);
        t->name[k][e->length] = '\0';
    }
}

static mtags_t *read_tags(unsigned n)
{
    jt = tm_calloc(n, sizeof *jt);
    cr_assert_not_null(jt);
    jn = n;
    at_walk_journal_all(at_path("data"), collect, NULL);
    return jt;
}

/* Machine i's group tag of round: its index, or -1. */
static int tag_of(const mtags_t *t, uint64_t round)
{
    int hit = -1;
    for (unsigned k = 0; k < t->ntags; k++) {
        if (t->id[k] != round)
            continue;
        cr_assert_eq(hit, -1, "round %" PRIu64 " tagged twice", round);
        hit = (int)k;
    }
    return hit;
}

/* The replay's tag of round is the record right after the PREPARED
 * position, and named for the round. */
static void expect_tag_after(const mtags_t *t, unsigned i, uint64_t round, uint64_t seq)
{
    int k = tag_of(t, round);
    cr_assert_geq(k, 0, "machine m%u has no group tag of round %" PRIu64, i, round);
    cr_assert_eq(t->seq[k], seq + 1, "m%u round %" PRIu64 ": tag at %" PRIu64 ", PREPARED named %" PRIu64, i, round,
                 t->seq[k], seq);
    cr_assert_leq(t->last_write_before[k], seq);
    char name[32];
    snprintf(name, sizeof name, "grp-%" PRIu64, round);
    cr_assert_str_eq(t->name[k], name);
}

static void finish_and_stop(void)
{
    cr_assert(arp_finish(agents, WAIT_MS), "the agents' records were not all acknowledged");
    arp_stop(agents);
    agents = NULL;
    its_stop(srv);
    srv = NULL;
}

/* ---- the tests ---- */

Test(agent_group_replay, commit_abort_hold_limit_and_stats)
{
    start(3, "rate=512k,bs=4k:3,16k:1,duration=100000", NULL, NULL);
    uint64_t s1[3], s2[3], s3[1], s4[3];

    prepare_all(3, 1, WIRE_TAG_CRASH, 5000, s1);
    commit_all(3, 1);
    prepare_all(3, 2, WIRE_TAG_CRASH, 5000, s2);
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(its_group_abort(srv, names[i], 2), 0);
    /* m0 alone, held past its 300 ms limit, then committed late */
    prepare_all(1, 3, WIRE_TAG_CRASH, 300, s3);
    agent_client_stats_t st;
    WAIT_STATS(0, st, st.rounds_timed_out == 1);
    cr_assert_eq(its_group_commit(srv, names[0], 3), 0, "held at ingest, so the late COMMIT is sent");
    prepare_all(3, 4, WIRE_TAG_CRASH, 5000, s4);
    commit_all(3, 4);
    /* released: the generator goes on after the tag */
    uint64_t deadline = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    for (unsigned i = 0; i < 3; i++) {
        ingest_machine_info_t mi = {0};
        while (its_machine(srv, names[i], &mi) != 0 || mi.durable_seq < s4[i] + 4) {
            cr_assert_lt(tm_mono_ns(), deadline, "m%u generated nothing after round 4", i);
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL); /* polling a state, with a deadline */
        }
    }
    for (unsigned i = 0; i < 3; i++) {
        WAIT_STATS(i, st, st.rounds_committed == 2);
        cr_assert_eq(st.rounds_aborted, 1);
        cr_assert_eq(st.rounds_timed_out, i == 0 ? 1u : 0u);
        cr_assert_eq(st.rounds_failed, 0);
        /* held within the limits: every hold on loopback is far under them */
        cr_assert_leq(st.hold_max_us, i == 0 ? 400000u : 5000000u, "m%u held %" PRIu64 " us", i, st.hold_max_us);
        uint64_t p50 = arp_hold_percentile(agents, i, 50), p99 = arp_hold_percentile(agents, i, 99);
        cr_assert_gt(p50, 0);
        cr_assert_leq(p50, p99);
        cr_assert_leq(p99, st.hold_max_us);
    }
    /* each round as m0 saw it; the timed-out one held until its limit less
     * the margin (wire.h), not less, and within the limit unless it says
     * it was late (a loop slower than the margin) */
    agent_round_rec_t recs[8];
    size_t nr = arp_rounds(agents, 0, recs, 8);
    cr_assert_eq(nr, 4);
    static const uint8_t outcome[] = {AGENT_ROUND_COMMITTED, AGENT_ROUND_ABORTED, AGENT_ROUND_TIMED_OUT,
                                      AGENT_ROUND_COMMITTED};
    for (size_t k = 0; k < nr; k++) {
        cr_assert_eq(recs[k].round, k + 1);
        cr_assert_eq(recs[k].kind, WIRE_TAG_CRASH);
        cr_assert_eq(recs[k].outcome, outcome[k], "round %zu: outcome %u", k + 1, recs[k].outcome);
    }
    cr_assert_geq(recs[2].hold_us, 300000u - WIRE_GROUP_HOLD_MARGIN_US(300), "held %" PRIu64 " us", recs[2].hold_us);
    cr_assert(recs[2].hold_us <= 300000u || recs[2].late_us > 0, "held %" PRIu64 " us, over the limit, not late",
              recs[2].hold_us);
    cr_assert_leq(recs[2].hold_us, 400000u, "held %" PRIu64 " us", recs[2].hold_us);
    finish_and_stop();
    mtags_t *t = read_tags(3);
    for (unsigned i = 0; i < 3; i++) {
        expect_tag_after(&t[i], i, 1, s1[i]);
        expect_tag_after(&t[i], i, 4, s4[i]);
        cr_assert_eq(tag_of(&t[i], 2), -1, "an aborted round left a tag");
        cr_assert_eq(tag_of(&t[i], 3), -1, "a timed-out round left a tag");
        cr_assert_gt(t[i].last_seq, t[i].seq[tag_of(&t[i], 4)] + 2, "m%u generated nothing after the last round", i);
    }
    tm_free(t);
}

Test(agent_group_replay, an_app_round_runs_the_scripts_in_order)
{
    const char *marks = at_path("marks");
    char pre[PATH_MAX + 128], post[PATH_MAX + 128];
    snprintf(pre, sizeof pre, "echo \"pre $TIDEMARK_TAG_ID $TIDEMARK_TAG_NAME\" >> '%s'", marks);
    snprintf(post, sizeof post, "echo \"post $TIDEMARK_TAG_ID\" >> '%s'", marks);
    start(1, "rate=256k,bs=4k,duration=100000", pre, post);
    uint64_t s5[1];
    prepare_all(1, 5, WIRE_TAG_APP, 5000, s5);
    /* held: the pre-script ran, the post-script waits for the decision */
    cr_assert_str_eq(slurp(marks), "pre 5 grp-5\n");
    commit_all(1, 5);
    agent_client_stats_t st;
    WAIT_STATS(0, st, st.rounds_committed == 1);
    cr_assert_str_eq(slurp(marks), "pre 5 grp-5\npost 5\n");
    agent_round_rec_t rec;
    cr_assert_eq(arp_rounds(agents, 0, &rec, 1), 1);
    cr_assert_eq(rec.kind, WIRE_TAG_APP);
    finish_and_stop();
    mtags_t *t = read_tags(1);
    expect_tag_after(&t[0], 0, 5, s5[0]);
    tm_free(t);
}

/* The "group of 100 machines completes rounds": every member holds,
 * every tag lands right after its member's position, each agent counts its
 * rounds and its holds stay under the limit. */
Test(agent_group_replay, a_hundred_machines_complete_rounds)
{
    enum { N = 100, ROUNDS = 5 };
    start(N, "rate=16k,bs=4k,duration=100000", NULL, NULL);
    static uint64_t seqs[ROUNDS][N];
    for (unsigned r = 0; r < ROUNDS; r++) {
        prepare_all(N, 100 + r, WIRE_TAG_CRASH, 10000, seqs[r]);
        commit_all(N, 100 + r);
    }
    uint64_t worst = 0;
    for (unsigned i = 0; i < N; i++) {
        agent_client_stats_t st;
        WAIT_STATS(i, st, st.rounds_committed == ROUNDS);
        cr_assert_eq(st.rounds_aborted + st.rounds_timed_out + st.rounds_failed, 0);
        uint64_t p99 = arp_hold_percentile(agents, i, 99);
        cr_assert_lt(p99, 10000000u);
        if (p99 > worst)
            worst = p99;
    }
    fprintf(stderr, "100 machines, %d rounds: the worst member's hold p99 %.3f ms\n", ROUNDS, worst / 1000.0);
    finish_and_stop();
    mtags_t *t = read_tags(N);
    for (unsigned i = 0; i < N; i++)
        for (unsigned r = 0; r < ROUNDS; r++)
            expect_tag_after(&t[i], i, 100 + r, seqs[r][i]);
    tm_free(t);
}

/* ---- a loop that runs nothing for a while ---- */

/* A long callback on the agents' loop: a prepare handle's, so it runs after
 * the loop's timers and before its poll for I/O, as a long idle phase of
 * busy producers does (other agents on the loop generating): the hold
 * limit's timer has had its turn in that iteration, and what arrived
 * meanwhile (the COMMIT) is read right after. It spins (the loop runs
 * nothing else) at least until min_ns and until the test says go, once. */
typedef struct blocker {
    uv_prepare_t h;
    uint64_t min_ns;
    atomic_bool started, go, done;
    uint64_t t_start, t_end; /* tm_mono_ns(): CLOCK_MONOTONIC, as uv_hrtime() */
} blocker_t;

static void block_loop(uv_prepare_t *h)
{
    blocker_t *b = h->data;
    b->t_start = tm_mono_ns();
    atomic_store(&b->started, true);
    uint64_t bound = b->t_start + (uint64_t)WAIT_MS * 1000000u;
    while ((tm_mono_ns() < b->min_ns || !atomic_load(&b->go)) && tm_mono_ns() < bound) {
    }
    b->t_end = tm_mono_ns();
    uv_close((uv_handle_t *)h, NULL);
    atomic_store(&b->done, true);
}

static int install_blocker(arp_t *p, void *arg)
{
    blocker_t *b = arg;
    uv_prepare_init(arp_loop(p), &b->h);
    b->h.data = b;
    return uv_prepare_start(&b->h, block_loop);
}

/* Poll (bounded) for a flag the agents' loop sets. */
static void wait_flag(atomic_bool *f, const char *what)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    while (!atomic_load(f)) {
        cr_assert_lt(tm_mono_ns(), deadline, "%s never happened", what);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a flag, with a deadline */
    }
}

/* Two agents on one loop, both held for a round whose limit passes while
 * their loop is blocked (three limits long); the COMMIT comes during the
 * block, after the limit, and is read in the same turn of the loop as the
 * block ends, before the limit's timer could run again. The hold cannot
 * end while nothing runs, but it ends at the loop's first chance (within
 * the slack of the block's end), before the COMMIT is looked at: the
 * COMMIT is ignored (no tag), the record says honestly how long the writes
 * were held and how late they went, and the next round works. */
Test(agent_group_replay, a_blocked_loop_releases_at_its_first_chance_and_ignores_the_late_commit)
{
    enum { N = 2, HOLD_MS = 300, ROUND = 7 };
    const uint64_t slack_ns = 50u * 1000000u; /* the loop's first turn after the block, sanitizers included */
    start(N, "rate=512k,bs=4k:3,16k:1,duration=100000", NULL, NULL);
    uint64_t s7[N], s8[N];
    prepare_all(N, ROUND, WIRE_TAG_CRASH, HOLD_MS, s7);

    static blocker_t b;
    b.min_ns = tm_mono_ns() + 3u * HOLD_MS * 1000000ull;
    atomic_store(&b.started, false);
    atomic_store(&b.go, false);
    atomic_store(&b.done, false);
    cr_assert_eq(arp_call(agents, install_blocker, &b), 0);
    wait_flag(&b.started, "the agents' loop running the blocker");
    /* Held at ingest, so ingest sends the COMMITs: they wait in the agents'
     * sockets until the loop polls again, long after the limit. */
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(its_group_commit(srv, names[i], ROUND), 0);
    atomic_store(&b.go, true);
    wait_flag(&b.done, "the blocker's end");
    cr_assert_geq(b.t_end, b.min_ns);

    for (unsigned i = 0; i < N; i++) {
        agent_client_stats_t st;
        WAIT_STATS(i, st, st.rounds_timed_out + st.rounds_committed == 1);
        cr_assert_eq(st.rounds_committed, 0, "m%u took the COMMIT that came after its hold limit", i);
        cr_assert_eq(st.rounds_late, 1, "m%u: a release past the limit not counted as late", i);
        agent_round_rec_t rec;
        cr_assert_eq(arp_rounds(agents, i, &rec, 1), 1);
        cr_assert_eq(rec.round, ROUND);
        cr_assert_eq(rec.outcome, AGENT_ROUND_TIMED_OUT);
        uint64_t held_from = rec.released_ns - rec.hold_us * 1000u;
        fprintf(stderr, "m%u: held %.3f ms, released %.3f ms past the limit, %.3f ms after the loop ran again\n", i,
                rec.hold_us / 1000.0, rec.late_us / 1000.0, ((double)rec.released_ns - (double)b.t_end) / 1e6);
        cr_assert_lt(held_from, b.t_start, "m%u: the hold had not started when the loop blocked", i);
        /* nothing can release while the loop runs nothing ... */
        cr_assert_geq(rec.released_ns, b.t_end, "m%u released while its loop was blocked?", i);
        /* ... and the first thing it runs afterwards does */
        cr_assert_leq(rec.released_ns - b.t_end, slack_ns, "m%u released %.3f ms after its loop ran again", i,
                      (rec.released_ns - b.t_end) / 1e6);
        /* the record is the truth: held across the block, late by all of
         * it but the limit (give or take the release's own millisecond) */
        cr_assert_geq(rec.hold_us * 1000u, b.t_end - b.t_start);
        cr_assert_geq(rec.late_us * 1000u + 1000000u, rec.hold_us * 1000u - (uint64_t)HOLD_MS * 1000000u);
        cr_assert_leq(rec.late_us * 1000u, rec.hold_us * 1000u - (uint64_t)HOLD_MS * 1000000u + 1000000u);
        cr_assert_gt(rec.late_us, 2u * HOLD_MS * 1000u - slack_ns / 1000u);
        cr_assert_geq(st.late_max_us, rec.late_us);
    }
    /* released: the next round holds and commits */
    prepare_all(N, ROUND + 1, WIRE_TAG_CRASH, 5000, s8);
    commit_all(N, ROUND + 1);
    for (unsigned i = 0; i < N; i++) {
        agent_client_stats_t st;
        WAIT_STATS(i, st, st.rounds_committed == 1);
        cr_assert_eq(st.rounds_late, 1);
    }
    finish_and_stop();
    mtags_t *t = read_tags(N);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(tag_of(&t[i], ROUND), -1, "m%u: a tag for the round it released at its limit", i);
        expect_tag_after(&t[i], i, ROUND + 1, s8[i]);
    }
    tm_free(t);
}
