/*
 * The "a group of 100 machines (replay agents) completes rounds",
 * through the coordinator: a real journal, points processor, ingest server
 * and consistency coordinator in this process on a loop of their own (as
 * `tidemark serve` wires them), 100 replay agents embedded on another loop
 * (../agent/arp.c) writing all along, one group of all 100. Rounds run on
 * request (cns_round_now), one after another; each must be recorded, and
 * then:
 *  - the coordinator's history has it "recorded";
 *  - the group's list (pts_group_points) has it whole, with 100 members;
 *  - every member's own point list has the member's point of it, marked
 *    multi-VM, with the round as its tag id;
 *  - latest-multivm-processed resolves, for every member, to its point of
 *    the newest group point;
 *  - every agent counted each round committed, none aborted, timed out or
 *    failed, and held for no longer than the hold limit.
 *
 * Workloads are seeded (the seed is printed); waits poll a state with a
 * deadline.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "consistency/consistency.h"
#include "ingest/ingest.h"
#include "ingest/registry.h"
#include "journal/journal.h"
#include "points/points.h"
#include "tests/agent/arp.h"
#include "tests/agent/at.h"
#include "tests/support/tmt.h"

#define N 100
#define ROUNDS 10
#define GROUP "hundred"
/* The hold limit: about 30 times the longest hold seen under the
 * sanitizers with 100 agents on one loop (some 35 ms; 4 ms without), so a
 * busy machine does not abort rounds: this test is about a group of this
 * size completing rounds; test_stall.c holds them to 100 ms. */
#define HOLD_MS 1000u
#define WAIT_NS (120ull * 1000000000ull)

/* ---- the appliance's side: journal, points, ingest and the coordinator on a loop thread ---- */

typedef struct srv {
    uv_loop_t loop;
    uv_async_t call;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending;
    int (*fn)(struct srv *s, void *arg);
    void *arg;
    int rc;
    jnl_t *jnl;
    pts_t *pts;
    ingest_t *ig;
    cns_t *cns;
    char addr[80];
    bool stopped; /* the stop chain ended (loop thread) */
} srv_t;

static srv_t *srv;
static arp_t *agents;
static char names[N][32];
static const char *namep[N];
static uint8_t secrets[N][AGENT_SECRET_LEN];

static void srv__on_call(uv_async_t *h)
{
    srv_t *s = h->data;
    pthread_mutex_lock(&s->mu);
    bool pending = s->pending;
    pthread_mutex_unlock(&s->mu);
    if (!pending)
        return;
    /* Unlocked: the caller waits for pending to drop, so fn and arg stay. */
    int rc = s->fn(s, s->arg);
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->pending = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *srv__run(void *arg)
{
    srv_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Run fn(s, arg) on the loop's thread; what it returns. */
static int srv_call(srv_t *s, int (*fn)(srv_t *s, void *arg), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->fn = fn;
    s->arg = arg;
    s->pending = true;
    uv_async_send(&s->call);
    while (s->pending)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->rc;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void srv_start(const char *data)
{
    char err[512], path[4300];
    srv = tm_calloc(1, sizeof *srv);
    cr_assert_not_null(srv);
    srv_t *s = srv;
    snprintf(path, sizeof path, "%s/journal", data);
    int rc = jnl_open(path, NULL, &s->jnl);
    cr_assert_eq(rc, 0, "jnl_open: %s", tm_strerror(rc));
    snprintf(path, sizeof path, "%s/index", data);
    pts_options_t po = {0};
    rc = pts_open(path, s->jnl, &po, &s->pts, err, sizeof err);
    cr_assert_eq(rc, 0, "pts_open: %s", err);
    cr_assert_eq(uv_loop_init(&s->loop), 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uv_async_init(&s->loop, &s->call, srv__on_call);
    s->call.data = s;
    /* Started here, before the loop's thread runs: until then the loop is
     * this thread's. */
    ingest_options_t io = {.data_dir = data, .listen = "127.0.0.1:0"};
    rc = ingest_start(&s->loop, s->jnl, &io, &s->ig, err, sizeof err);
    cr_assert_eq(rc, 0, "ingest_start: %s", err);
    ingest_address(s->ig, s->addr, sizeof s->addr);
    cns_group_cfg_t g = {.name = GROUP, .members = namep, .nmembers = N, .crash_every_ns = UINT64_MAX,
                         .app_every_ns = UINT64_MAX, .hold_ms = HOLD_MS};
    rc = cns_start(&s->loop, s->ig, s->pts, &g, 1, &s->cns, err, sizeof err);
    cr_assert_eq(rc, 0, "cns_start: %s", err);
    cr_assert_eq(pthread_create(&s->thread, NULL, srv__run, s), 0);
    s->running = true;
}

static void srv__ingest_stopped(void *arg)
{
    srv_t *s = arg;
    s->stopped = true;
    uv_close((uv_handle_t *)&s->call, NULL);
}

static void srv__cns_stopped(void *arg)
{
    srv_t *s = arg;
    ingest_stop(s->ig, srv__ingest_stopped, s);
}

static int srv__stop(srv_t *s, void *arg)
{
    (void)arg;
    cns_stop(s->cns, srv__cns_stopped, s);
    return 0;
}

/* The coordinator, then ingest; the loop ends once both are closed. */
static void srv_stop(void)
{
    srv_t *s = srv;
    srv = NULL;
    srv_call(s, srv__stop, NULL);
    pthread_join(s->thread, NULL);
    cr_assert(s->stopped);
    cr_assert_eq(uv_loop_close(&s->loop), 0, "a handle was left open");
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pts_close(s->pts);
    jnl_destroy(s->jnl);
    tm_free(s);
}

/* ---- calls on the loop ---- */

typedef struct ready_q {
    unsigned ready;
    const char *first_missing;
} ready_q_t;

static int srv__ready(srv_t *s, void *arg)
{
    ready_q_t *q = arg;
    q->ready = 0;
    q->first_missing = NULL;
    for (unsigned i = 0; i < N; i++) {
        ingest_machine_info_t mi;
        if (ingest_machine_state(s->ig, names[i], &mi) == 0 && mi.connected && mi.state == INGEST_MACHINE_PROTECTED)
            q->ready++;
        else if (!q->first_missing)
            q->first_missing = names[i];
    }
    return 0;
}

typedef struct round_q {
    uint64_t id;
    json_t *group; /* cns_group_json */
} round_q_t;

static int srv__round_now(srv_t *s, void *arg)
{
    round_q_t *q = arg;
    return cns_round_now(s->cns, GROUP, false, &q->id);
}

static int srv__group(srv_t *s, void *arg)
{
    round_q_t *q = arg;
    q->group = cns_group_json(s->cns, GROUP);
    return q->group ? 0 : TM_ENOTFOUND;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Round id from the group's history (a new reference), or NULL. */
static json_t *history_round(const json_t *group, uint64_t id)
{
    char want[24];
    snprintf(want, sizeof want, "%" PRIu64, id);
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(group, "history"), i, r)
    {
        const char *rid = json_string_value(json_object_get(r, "id"));
        if (rid && strcmp(rid, want) == 0)
            return json_incref(r);
    }
    return NULL;
}

static bool final_state(const char *st)
{
    return strcmp(st, "recorded") == 0 || strcmp(st, "aborted") == 0 || strcmp(st, "unrecorded") == 0;
}

/* One crash round on request, waited for until it ends: its state must be
 * "recorded". Its id. */
static uint64_t one_round(unsigned k)
{
    uint64_t deadline = tm_mono_ns() + WAIT_NS;
    round_q_t q = {0};
    int rc;
    /* the previous round is over at the coordinator once recorded, so no
     * other round is in flight: -EBUSY would be a bug */
    rc = srv_call(srv, srv__round_now, &q);
    cr_assert_eq(rc, 0, "round %u: cns_round_now: %s", k, tm_strerror(rc));
    cr_assert_neq(q.id, 0);
    for (;;) {
        cr_assert_eq(srv_call(srv, srv__group, &q), 0);
        json_t *r = history_round(q.group, q.id);
        cr_assert_not_null(r, "round %" PRIu64 " is not in the history: %s", q.id, json_dumps(q.group, 0));
        const char *st = json_string_value(json_object_get(r, "state"));
        cr_assert_not_null(st);
        if (final_state(st)) {
            cr_assert_str_eq(st, "recorded", "round %u (%" PRIu64 ") %s: %s", k, q.id, st,
                             json_string_value(json_object_get(r, "reason")));
            cr_assert(json_is_null(json_object_get(r, "reason")), "%s", json_dumps(r, 0));
            cr_assert_eq(json_array_size(json_object_get(r, "members")), N);
            fprintf(stderr, "round %u (%" PRIu64 "): prepared in %.1f ms, recorded in %.1f ms\n", k, q.id,
                    json_real_value(json_object_get(r, "prepare_ms")),
                    json_real_value(json_object_get(r, "round_ms")));
            json_decref(r);
            json_decref(q.group);
            return q.id;
        }
        json_decref(r);
        json_decref(q.group);
        cr_assert_lt(tm_mono_ns(), deadline, "round %" PRIu64 " still %s", q.id, st);
        pause_ms(5); /* polling the round's state, with a deadline */
    }
}

/* ---- the test ---- */

static void setup(void)
{
    at_setup();
    tm_log_set_level(TM_LOG_WARN); /* a hundred agents' and sessions' notes are noise here */
}

static void teardown(void)
{
    if (agents)
        arp_stop(agents);
    agents = NULL;
    if (srv)
        srv_stop();
    at_teardown();
}

TestSuite(consistency_scale, .init = setup, .fini = teardown, .timeout = 280);

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

Test(consistency_scale, a_group_of_a_hundred_replay_agents_completes_rounds)
{
    uint64_t seed = tmt_env_u64("TIDEMARK_GROUP_SEED", 0x31303021u);
    fprintf(stderr, "seed %" PRIu64 " (TIDEMARK_GROUP_SEED)\n", seed);
    char data[4200];
    snprintf(data, sizeof data, "%s", at_path("data"));
    cr_assert_eq(mkdir(data, 0700), 0);
    for (unsigned i = 0; i < N; i++) {
        char err[256], hex[INGEST_SECRET_HEX + 1];
        snprintf(names[i], sizeof names[i], "m%03u", i);
        namep[i] = names[i];
        int rc = ingest_registry_add(data, names[i], hex, err, sizeof err);
        cr_assert_eq(rc, 0, "registering %s: %s", names[i], err);
        cr_assert_eq(ingest_hex_decode(hex, secrets[i], AGENT_SECRET_LEN), 0);
    }
    srv_start(data);

    /* small disks, a steady trickle of writes from every member all along */
    arp_opts_t o = {.server = srv->addr,
                    .n = N,
                    .machines = namep,
                    .secrets = (const uint8_t(*)[AGENT_SECRET_LEN])secrets,
                    .workload = "disks=1,size=1M,rate=16k,bs=4k:3,16k:1,duration=100000",
                    .seed = seed};
    agents = arp_start(&o);
    uint64_t deadline = tm_mono_ns() + WAIT_NS;
    for (ready_q_t q = {0};;) {
        srv_call(srv, srv__ready, &q);
        if (q.ready == N)
            break;
        cr_assert_lt(tm_mono_ns(), deadline, "only %u of %u machines streaming and protected (%s is not)", q.ready,
                     N, q.first_missing);
        pause_ms(10); /* polling a state, with a deadline */
    }

    uint64_t ids[ROUNDS];
    for (unsigned k = 0; k < ROUNDS; k++)
        ids[k] = one_round(k);

    /* the coordinator counts them, and nothing else happened */
    round_q_t gq = {0};
    cr_assert_eq(srv_call(srv, srv__group, &gq), 0);
    const json_t *counts = json_object_get(gq.group, "rounds");
    cr_assert_eq(json_integer_value(json_object_get(counts, "recorded")), ROUNDS, "%s", json_dumps(gq.group, 0));
    cr_assert_eq(json_integer_value(json_object_get(counts, "committed")), ROUNDS);
    cr_assert_eq(json_integer_value(json_object_get(counts, "aborted")), 0);
    for (unsigned k = 0; k < ROUNDS; k++) {
        json_t *r = history_round(gq.group, ids[k]);
        cr_assert_not_null(r);
        cr_assert_str_eq(json_string_value(json_object_get(r, "state")), "recorded");
        json_decref(r);
    }
    json_decref(gq.group);

    /* the group's list: every round whole, with every member once */
    pts_group_point_t *gp;
    size_t ngp;
    cr_assert_eq(pts_group_points(srv->pts, GROUP, 0, &gp, &ngp), 0);
    cr_assert_eq(ngp, ROUNDS, "%zu group points", ngp);
    static uint64_t at[ROUNDS][N]; /* round k, member i: its point */
    for (unsigned k = 0; k < ROUNDS; k++) {
        const pts_group_point_t *p = &gp[ROUNDS - 1 - k]; /* newest first */
        cr_assert_eq(p->round, ids[k], "group point %u is round %" PRIu64 ", not %" PRIu64, k, p->round, ids[k]);
        cr_assert_eq(p->kind, PTS_KIND_CRASH);
        cr_assert(p->whole, "round %" PRIu64 " is not whole", p->round);
        cr_assert_eq(p->nmembers, N);
        const char *seen[N];
        for (unsigned m = 0; m < N; m++) {
            seen[m] = p->members[m].machine;
            unsigned i = (unsigned)atoi(p->members[m].machine + 1);
            cr_assert_lt(i, N);
            cr_assert_str_eq(p->members[m].machine, names[i]);
            at[k][i] = p->members[m].seq;
        }
        qsort(seen, N, sizeof *seen, cmp_str);
        for (unsigned m = 0; m < N; m++)
            cr_assert_str_eq(seen[m], names[m], "round %" PRIu64 ": members are not the group's", p->round);
    }
    pts_group_points_free(gp, ngp);

    /* every member's own list has its point of each round, marked multi-VM,
     * and the selector names its point of the newest round */
    for (unsigned i = 0; i < N; i++) {
        pts_point_t *v;
        size_t n;
        pts_query_t q = {0};
        cr_assert_eq(pts_points(srv->pts, names[i], &q, &v, &n), 0);
        for (unsigned k = 0; k < ROUNDS; k++) {
            const pts_point_t *hit = NULL;
            for (size_t j = 0; j < n && !hit; j++)
                if (v[j].seq == at[k][i])
                    hit = &v[j];
            cr_assert_not_null(hit, "%s has no point at %" PRIu64 " (round %" PRIu64 ")", names[i], at[k][i], ids[k]);
            cr_assert(hit->multivm, "%s's point %" PRIu64 " of round %" PRIu64 " is not marked multi-VM", names[i],
                      hit->seq, ids[k]);
            cr_assert_eq(hit->tag_id, ids[k], "%s's point %" PRIu64 ": tag id %" PRIu64 ", round %" PRIu64, names[i],
                         hit->seq, hit->tag_id, ids[k]);
            if (k > 0)
                cr_assert_gt(at[k][i], at[k - 1][i], "%s: round %u's point is not after round %u's", names[i], k,
                             k - 1);
        }
        /* only the rounds' points are multi-VM */
        unsigned multivm = 0;
        for (size_t j = 0; j < n; j++)
            multivm += v[j].multivm;
        cr_assert_eq(multivm, ROUNDS, "%s has %u multi-VM points", names[i], multivm);
        tm_free(v);
        pts_point_t pt;
        char why[256] = "";
        int rc = pts_resolve(srv->pts, names[i], "latest-multivm-processed", &pt, why, sizeof why);
        cr_assert_eq(rc, 0, "%s: latest-multivm-processed: %s (%s)", names[i], tm_strerror(rc), why);
        cr_assert_eq(pt.seq, at[ROUNDS - 1][i],
                     "%s: latest-multivm-processed is %" PRIu64 ", the newest group point's is %" PRIu64, names[i],
                     pt.seq, at[ROUNDS - 1][i]);
        cr_assert(pt.multivm);
    }

    /* every agent saw each round committed and held within the limit */
    uint64_t worst = 0;
    static agent_round_rec_t recs[ROUNDS + 1];
    for (unsigned i = 0; i < N; i++) {
        agent_client_stats_t st;
        uint64_t dl = tm_mono_ns() + WAIT_NS;
        for (;;) {
            arp_stats(agents, i, &st);
            if (st.rounds_committed == ROUNDS)
                break;
            cr_assert_lt(tm_mono_ns(), dl, "%s counted %" PRIu64 " rounds committed", names[i], st.rounds_committed);
            pause_ms(5); /* polling the agent's count, with a deadline */
        }
        cr_assert_eq(st.rounds_aborted + st.rounds_timed_out + st.rounds_failed, 0,
                     "%s: %" PRIu64 " aborted, %" PRIu64 " timed out, %" PRIu64 " failed", names[i],
                     st.rounds_aborted, st.rounds_timed_out, st.rounds_failed);
        cr_assert_leq(st.hold_max_us, HOLD_MS * 1000ull, "%s held %" PRIu64 " us, over the %u ms limit", names[i],
                      st.hold_max_us, HOLD_MS);
        size_t nr = arp_rounds(agents, i, recs, ROUNDS + 1);
        cr_assert_eq(nr, ROUNDS);
        for (size_t k = 0; k < nr; k++) {
            cr_assert_eq(recs[k].round, ids[k]);
            cr_assert_eq(recs[k].outcome, AGENT_ROUND_COMMITTED);
            cr_assert_gt(recs[k].hold_us, 0, "%s: round %" PRIu64 " was not held", names[i], ids[k]);
            cr_assert_leq(recs[k].hold_us, HOLD_MS * 1000ull);
        }
        if (st.hold_max_us > worst)
            worst = st.hold_max_us;
    }
    fprintf(stderr, "%u machines, %u rounds recorded: the longest hold of any member %.3f ms (limit %u ms)\n", N,
            ROUNDS, worst / 1000.0, HOLD_MS);
}
