/*
 * bench_consistency: group rounds of the consistency coordinator over real
 * ingest, a real journal and the points stage, with embedded replay agents
 * as the group's machines, all in one process (issue 5, "Benchmark").
 *
 * For each group size N (--members, default 2,16,128):
 *  1. rounds: --rounds crash rounds (default 50), one after another (each
 *     started once the previous one is recorded, aborted or unrecorded),
 *     hold limit --hold-ms (default 100), while every member writes at
 *     --round-rate bytes/s. Hold per member (the agents' own round
 *     records), prepare time and round time (cns_round_times: prepare sent
 *     .. group point recorded). Every round that did not become a group
 *     point is counted and printed.
 *  2. throughput: the agents restart with an unlimited workload; --runs
 *     pairs of --secs seconds without rounds and with a round every second
 *     (the order alternating between pairs), journal bytes made durable
 *     (what ingest acknowledges) per second; the median of each and the
 *     ratio. The baseline is the same workload without rounds.
 * Peak RSS at the end; a table per N on stderr/stdout, and the last line one
 * JSON object with every figure.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/client.h"
#include "agent/replay.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "bench/consistency/bc.h"
#include "bench/journal/bj.h"
#include "consistency/consistency.h"
#include "ingest/ingest.h"
#include "ingest/registry.h"
#include "journal/journal.h"
#include "points/points.h"

#ifndef BC_DEFAULT_DIR
#define BC_DEFAULT_DIR "."
#endif

#define BC_GROUP "bench"
#define BC_MAX_SIZES 8
#define BC_MAX_ROUNDS 4000u
#define BC_WAIT_NS (120ull * 1000000000ull)
/* Real agents are processes of their own, each with its own loop. One loop
 * for 128 agents makes one agent's timers wait for 127 others' work (a
 * loop iteration of hundreds of ms under unlimited load): the bench would
 * measure its own loop, not the agents. So many loops, a few agents each,
 * but not a thread per agent on a machine of a few cores. */
#define BC_AGENTS_PER_LOOP 4u
/* Each agent's stream bound: ingest's window (16 MiB) and a little more,
 * not the default 64 MiB: a hundred agents in one process each filling
 * 64 MiB under unlimited load took 9 GiB and measured nothing more. */
#define BC_AGENT_QUEUE (24u << 20)
#define BC_MAX_AGENT_LOOPS 64u

/* Targets (issue 5): never loosened here. */
#define BC_TARGET_HOLD16_US 10000u
#define BC_TARGET_HOLD128_US 50000u
#define BC_TARGET_RATIO 0.95

typedef struct bc_opts {
    uint64_t sizes[BC_MAX_SIZES];
    unsigned nsizes;
    unsigned rounds;
    unsigned secs;
    unsigned warmup;     /* seconds of unlimited writes before the first stretch */
    unsigned runs;
    unsigned hold_ms;
    unsigned agent_loops; /* loop threads the agents are spread over; 0: one per BC_AGENTS_PER_LOOP */
    uint64_t round_rate; /* bytes/s per member during the rounds phase */
    uint64_t disk;       /* each member's disk */
    uint64_t seed;
    const char *dir;
} bc_opts_t;

typedef struct bc_result {
    unsigned n;
    /* rounds phase */
    unsigned rounds, recorded, aborted, unrecorded, busy_waits;
    uint64_t hold_p50_us, hold_p99_us, hold_max_us; /* pooled over every member's rounds */
    uint64_t worst_member_p99_us;                   /* the largest per-member p99 */
    uint64_t agent_committed, agent_aborted, agent_timed_out, agent_failed;
    uint64_t agent_late, late_max_us; /* acted on the limit past the slack (agent_client_stats_t.rounds_late) */
    unsigned agent_loops;
    double prepare_p50_ms, prepare_p99_ms; /* prepare sent .. commit sent */
    double round_p50_ms, round_p99_ms;     /* prepare sent .. recorded (cns_round_times) */
    size_t nround_times;
    char first_reason[320];
    /* throughput phase */
    double tput_without_mbs, tput_with_mbs, ratio; /* medians; ratio = median of the pairs' ratios */
    double ratio_of_medians;
    unsigned tput_runs;
    unsigned load_rounds_started, load_rounds_recorded, load_rounds_aborted, load_rounds_busy;
    uint64_t load_hold_p50_us, load_hold_p99_us, load_hold_max_us;
    uint64_t load_timed_out, load_late, load_late_max_us; /* the throughput phase's agents (new ones) */
    double setup_s;
    long peak_rss_kib; /* this size alone (VmHWM after a reset), agents included; 0 unknown */
    bool hold_target_known, hold_target_met, ratio_met;
    uint64_t hold_target_us;
} bc_result_t;

/* bench/journal's flag: set on SIGINT/SIGTERM; the phases stop early and
 * the scratch folder is still removed. */
volatile sig_atomic_t bj_interrupted;

static void bc_on_signal(int sig)
{
    (void)sig;
    bj_interrupted = 1;
}

/* ---- one benchmark instance ---------------------------------------------------------------------- */

typedef struct bc_run {
    const bc_opts_t *o;
    unsigned n;
    char dir[PATH_MAX];
    char **names;
    uint8_t (*secrets)[AGENT_SECRET_LEN];
    jnl_t *jnl;
    pts_t *pts;
    bc_loop_t srv;
    bc_loop_t *ag;         /* nag loops; agent i runs on ag[i % nag] */
    unsigned nag, ag_inited;
    bool srv_init;
    ingest_t *ig;
    cns_t *cns;
    char addr[80];
    agent_replay_t **agents;
    unsigned *closed;      /* per agent loop: its agents closed (on that loop) */
    volatile int stopped;  /* the server side's stop chain ended */
} bc_run_t;

/* -- the server loop -- */

typedef struct bc_round_q {
    bc_run_t *b;
    uint64_t id;
    int rc;
    char state[24];
    char reason[256];
    double prepare_ms, round_ms;
    uint64_t committed, recorded, aborted;
} bc_round_q_t;

static int srv_round_now(void *arg)
{
    bc_round_q_t *q = arg;
    q->rc = cns_round_now(q->b->cns, BC_GROUP, false, &q->id);
    return 0;
}

/* The state of round q->id from the group's history, and the counts. */
static int srv_round_state(void *arg)
{
    bc_round_q_t *q = arg;
    json_t *g = cns_group_json(q->b->cns, BC_GROUP);
    if (!g)
        return TM_ENOTFOUND;
    json_t *rounds = json_object_get(g, "rounds");
    q->committed = (uint64_t)json_integer_value(json_object_get(rounds, "committed"));
    q->recorded = (uint64_t)json_integer_value(json_object_get(rounds, "recorded"));
    q->aborted = (uint64_t)json_integer_value(json_object_get(rounds, "aborted"));
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, q->id);
    q->state[0] = '\0';
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(g, "history"), i, r)
    {
        const char *rid = json_string_value(json_object_get(r, "id"));
        if (!rid || strcmp(rid, id) != 0)
            continue;
        const char *state = json_string_value(json_object_get(r, "state"));
        snprintf(q->state, sizeof q->state, "%s", state ? state : "");
        const char *why = json_string_value(json_object_get(r, "reason"));
        snprintf(q->reason, sizeof q->reason, "%s", why ? why : "");
        json_t *pm = json_object_get(r, "prepare_ms"), *rm = json_object_get(r, "round_ms");
        q->prepare_ms = json_is_number(pm) ? json_number_value(pm) : -1;
        q->round_ms = json_is_number(rm) ? json_number_value(rm) : -1;
        break;
    }
    json_decref(g);
    return 0;
}

typedef struct bc_times_q {
    bc_run_t *b;
    uint64_t ns[CNS_HISTORY];
    size_t n;
} bc_times_q_t;

static int srv_round_times(void *arg)
{
    bc_times_q_t *q = arg;
    q->n = cns_round_times(q->b->cns, BC_GROUP, q->ns, CNS_HISTORY);
    return 0;
}

typedef struct bc_mach_q {
    bc_run_t *b;
    unsigned ready;
} bc_mach_q_t;

/* How many members are connected and protected. */
static int srv_ready(void *arg)
{
    bc_mach_q_t *q = arg;
    q->ready = 0;
    for (unsigned i = 0; i < q->b->n; i++) {
        ingest_machine_info_t mi;
        if (ingest_machine_state(q->b->ig, q->b->names[i], &mi) == 0 && mi.connected &&
            mi.state == INGEST_MACHINE_PROTECTED)
            q->ready++;
    }
    return 0;
}

static void srv_ingest_stopped(void *arg)
{
    bc_run_t *b = arg;
    b->stopped = 1;
}

static void srv_cns_stopped(void *arg)
{
    bc_run_t *b = arg;
    b->cns = NULL;
    ingest_stop(b->ig, srv_ingest_stopped, b);
    b->ig = NULL;
}

static int srv_stop(void *arg)
{
    bc_run_t *b = arg;
    if (b->cns)
        cns_stop(b->cns, srv_cns_stopped, b);
    else if (b->ig)
        srv_cns_stopped(b);
    else
        b->stopped = 1;
    return 0;
}

/* -- the agents' loop -- */

typedef struct bc_start_q {
    bc_run_t *b;
    unsigned k;    /* the agent loop: agents k, k + nag, ... */
    uint64_t rate;
    char err[256];
} bc_start_q_t;

static int ag_start(void *arg)
{
    bc_start_q_t *q = arg;
    bc_run_t *b = q->b;
    for (unsigned i = q->k; i < b->n; i += b->nag) {
        char spec[256];
        /* The same seed for both phases: the generator is a function of the
         * sequence, so the second agent of a machine goes on where ingest
         * says its stream stands. */
        snprintf(spec, sizeof spec, "disks=1,size=%" PRIu64 ",bs=4k:3,64k:1,compress=0.5,rate=%" PRIu64
                 ",duration=1000000,seed=%" PRIu64, b->o->disk, q->rate, b->o->seed + i);
        agent_replay_opts_t ro = {.server = b->addr, .machine = b->names[i], .secret = b->secrets[i],
                                  .backoff_max_ms = 500, .queue_bytes = BC_AGENT_QUEUE};
        int rc = agent_workload_parse(spec, &ro.workload, q->err, sizeof q->err);
        if (rc == 0)
            rc = agent_replay_new(&b->ag[q->k].loop, &ro, &b->agents[i]);
        if (rc != 0) {
            if (!q->err[0])
                snprintf(q->err, sizeof q->err, "agent_replay_new %s: %s", b->names[i], tm_strerror(rc));
            return rc;
        }
        agent_replay_start(b->agents[i]);
    }
    return 0;
}

/* One agent loop's share of a call. */
typedef struct bc_ag_q {
    bc_run_t *b;
    unsigned k;
    unsigned closed;
} bc_ag_q_t;

static void ag_closed(void *arg)
{
    unsigned *closed = arg;
    (*closed)++;
}

static int ag_close(void *arg)
{
    bc_ag_q_t *q = arg;
    bc_run_t *b = q->b;
    b->closed[q->k] = 0;
    for (unsigned i = q->k; i < b->n; i += b->nag) {
        if (b->agents[i])
            agent_replay_close(b->agents[i], ag_closed, &b->closed[q->k]);
        else
            b->closed[q->k]++;
        b->agents[i] = NULL;
    }
    return 0;
}

static int ag_count_closed(void *arg)
{
    bc_ag_q_t *q = arg;
    q->closed = q->b->closed[q->k];
    return 0;
}

/* How many agents loop k runs. */
static unsigned bc_loop_agents(const bc_run_t *b, unsigned k)
{
    return b->n / b->nag + (k < b->n % b->nag ? 1u : 0u);
}

/* Every member's held rounds (pooled), the worst member's p99 and the
 * agents' outcome counts. */
typedef struct bc_holds_q {
    bc_run_t *b;
    unsigned k;        /* the agent loop asked */
    uint64_t *holds;   /* n * AGENT_ROUND_HISTORY slots */
    size_t nholds;
    agent_round_rec_t *recs;
    uint64_t worst_p99, committed, aborted, timed_out, failed;
    uint64_t late, late_max_us; /* timed out and released past the limit's slack (agent_client_stats_t) */
} bc_holds_q_t;

/* Adds loop q->k's agents to q (the caller zeroes it once). */
static int ag_holds(void *arg)
{
    bc_holds_q_t *q = arg;
    for (unsigned i = q->k; i < q->b->n; i += q->b->nag) {
        agent_client_t *c = agent_replay_client(q->b->agents[i]);
        agent_client_stats_t st;
        agent_client_get_stats(c, &st);
        q->committed += st.rounds_committed;
        q->aborted += st.rounds_aborted;
        q->timed_out += st.rounds_timed_out;
        q->failed += st.rounds_failed;
        q->late += st.rounds_late;
        if (st.late_max_us > q->late_max_us)
            q->late_max_us = st.late_max_us;
        uint64_t p99 = agent_client_hold_percentile(c, 99);
        if (p99 > q->worst_p99)
            q->worst_p99 = p99;
        size_t nr = agent_client_rounds(c, q->recs, AGENT_ROUND_HISTORY);
        for (size_t k = 0; k < nr; k++)
            if (q->recs[k].outcome != AGENT_ROUND_FAILED)
                q->holds[q->nholds++] = q->recs[k].hold_us;
    }
    return 0;
}

/* -- setup and teardown -- */

static int bc_wait_ready(bc_run_t *b)
{
    uint64_t deadline = tm_mono_ns() + BC_WAIT_NS;
    bc_mach_q_t q = {.b = b};
    for (;;) {
        bc_loop_call(&b->srv, srv_ready, &q);
        if (q.ready == b->n)
            return 0;
        if (tm_mono_ns() > deadline) {
            fprintf(stderr, "bench_consistency: only %u of %u machines connected and protected after %llu s\n",
                    q.ready, b->n, (unsigned long long)(BC_WAIT_NS / 1000000000ull));
            return -ETIMEDOUT;
        }
        bc_sleep_ms(20); /* polling a state, with a deadline */
    }
}

static int bc_agents_start(bc_run_t *b, uint64_t rate)
{
    for (unsigned k = 0; k < b->nag; k++) {
        b->closed[k] = 0;
        bc_start_q_t q = {.b = b, .k = k, .rate = rate};
        int rc = bc_loop_call(&b->ag[k], ag_start, &q);
        if (rc != 0) {
            fprintf(stderr, "bench_consistency: %s\n", q.err);
            return rc;
        }
    }
    return bc_wait_ready(b);
}

static void bc_agents_close(bc_run_t *b)
{
    for (unsigned k = 0; k < b->nag; k++) {
        bc_ag_q_t q = {.b = b, .k = k};
        bc_loop_call(&b->ag[k], ag_close, &q);
    }
    for (unsigned k = 0; k < b->nag; k++) {
        bc_ag_q_t q = {.b = b, .k = k};
        for (;;) {
            bc_loop_call(&b->ag[k], ag_count_closed, &q);
            if (q.closed == bc_loop_agents(b, k))
                break;
            bc_sleep_ms(5); /* the closes finish on the agents' loop */
        }
    }
}

static int bc_setup(bc_run_t *b)
{
    char err[512], path[PATH_MAX + 32];
    if (snprintf(b->dir, sizeof b->dir, "%s/bench-consistency-XXXXXX", b->o->dir) >= (int)sizeof b->dir ||
        !mkdtemp(b->dir)) {
        fprintf(stderr, "bench_consistency: cannot make a scratch folder in %s: %s\n", b->o->dir, strerror(errno));
        b->dir[0] = '\0';
        return -EIO;
    }
    b->names = tm_calloc(b->n, sizeof *b->names);
    b->secrets = tm_calloc(b->n, sizeof *b->secrets);
    b->agents = tm_calloc(b->n, sizeof *b->agents);
    b->nag = b->o->agent_loops ? b->o->agent_loops : (b->n + BC_AGENTS_PER_LOOP - 1) / BC_AGENTS_PER_LOOP;
    if (b->nag > BC_MAX_AGENT_LOOPS)
        b->nag = BC_MAX_AGENT_LOOPS;
    if (b->nag > b->n)
        b->nag = b->n;
    b->ag = tm_calloc(b->nag, sizeof *b->ag);
    b->closed = tm_calloc(b->nag, sizeof *b->closed);
    if (!b->names || !b->secrets || !b->agents || !b->ag || !b->closed)
        return -ENOMEM;
    for (unsigned i = 0; i < b->n; i++) {
        char name[32], hex[INGEST_SECRET_HEX + 1];
        snprintf(name, sizeof name, "bench-m%u", i);
        b->names[i] = tm_strdup(name);
        if (!b->names[i])
            return -ENOMEM;
        int rc = ingest_registry_add(b->dir, name, hex, err, sizeof err);
        if (rc == 0)
            rc = ingest_hex_decode(hex, b->secrets[i], AGENT_SECRET_LEN);
        if (rc != 0) {
            fprintf(stderr, "bench_consistency: registering %s: %s\n", name, err);
            return rc;
        }
    }
    snprintf(path, sizeof path, "%s/journal", b->dir);
    int rc = jnl_open(path, NULL, &b->jnl);
    if (rc != 0) {
        fprintf(stderr, "bench_consistency: jnl_open: %s\n", tm_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof path, "%s/index", b->dir);
    pts_options_t po = {0};
    rc = pts_open(path, b->jnl, &po, &b->pts, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "bench_consistency: pts_open: %s\n", err);
        return rc;
    }
    if ((rc = bc_loop_init(&b->srv)) != 0)
        return rc;
    b->srv_init = true;
    for (; b->ag_inited < b->nag; b->ag_inited++)
        if ((rc = bc_loop_init(&b->ag[b->ag_inited])) != 0)
            return rc;
    /* Both started on this thread before the server loop's thread runs:
     * the loop is this thread's until then. */
    ingest_options_t io = {.data_dir = b->dir, .listen = "127.0.0.1:0"};
    rc = ingest_start(&b->srv.loop, b->jnl, &io, &b->ig, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "bench_consistency: ingest_start: %s\n", err);
        return rc;
    }
    ingest_address(b->ig, b->addr, sizeof b->addr);
    cns_group_cfg_t g = {.name = BC_GROUP, .members = (const char *const *)b->names, .nmembers = b->n,
                         .crash_every_ns = UINT64_MAX, .app_every_ns = UINT64_MAX, .hold_ms = b->o->hold_ms};
    rc = cns_start(&b->srv.loop, b->ig, b->pts, &g, 1, &b->cns, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "bench_consistency: cns_start: %s\n", err);
        return rc;
    }
    if ((rc = bc_loop_run(&b->srv)) != 0)
        return rc;
    for (unsigned k = 0; k < b->nag; k++)
        if ((rc = bc_loop_run(&b->ag[k])) != 0)
            return rc;
    return 0;
}

static void bc_teardown(bc_run_t *b)
{
    if (b->ag_inited) {
        bool all_running = b->ag_inited == b->nag;
        for (unsigned k = 0; k < b->ag_inited; k++)
            all_running = all_running && b->ag[k].running;
        if (all_running)
            bc_agents_close(b);
        for (unsigned k = 0; k < b->ag_inited; k++)
            bc_loop_stop(&b->ag[k]);
    }
    if (b->srv_init) {
        if (b->srv.running) {
            bc_loop_call(&b->srv, srv_stop, b);
            while (!b->stopped)
                bc_sleep_ms(5); /* the stop chain ends on the server loop */
        } else if (b->ig) {
            srv_stop(b);
            uv_run(&b->srv.loop, UV_RUN_DEFAULT);
        }
        bc_loop_stop(&b->srv);
    }
    pts_close(b->pts);
    if (b->jnl)
        jnl_destroy(b->jnl); /* closes, then frees */
    for (unsigned i = 0; b->names && i < b->n; i++)
        tm_free(b->names[i]);
    tm_free(b->names);
    tm_free(b->secrets);
    tm_free(b->agents);
    tm_free(b->ag);
    tm_free(b->closed);
    if (b->dir[0] && bj_rmtree(b->dir) != 0)
        fprintf(stderr, "bench_consistency: could not remove %s\n", b->dir);
}

/* -- the phases -- */

static bool bc_final(const char *state)
{
    return strcmp(state, "recorded") == 0 || strcmp(state, "aborted") == 0 || strcmp(state, "unrecorded") == 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct_double(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    double want = p * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static int bc_collect_holds(bc_run_t *b, uint64_t *p50, uint64_t *p99, uint64_t *max, bc_holds_q_t *out)
{
    bc_holds_q_t q = {.b = b};
    q.holds = tm_calloc((size_t)b->n * AGENT_ROUND_HISTORY, sizeof *q.holds);
    q.recs = tm_calloc(AGENT_ROUND_HISTORY, sizeof *q.recs);
    if (!q.holds || !q.recs) {
        tm_free(q.holds);
        tm_free(q.recs);
        return -ENOMEM;
    }
    for (unsigned k = 0; k < b->nag; k++) {
        q.k = k;
        bc_loop_call(&b->ag[k], ag_holds, &q);
    }
    bj_sort_u64(q.holds, q.nholds);
    *p50 = bj_percentile(q.holds, q.nholds, 0.50);
    *p99 = bj_percentile(q.holds, q.nholds, 0.99);
    *max = q.nholds ? q.holds[q.nholds - 1] : 0;
    tm_free(q.holds);
    tm_free(q.recs);
    q.holds = NULL;
    q.recs = NULL;
    if (out)
        *out = q;
    return 0;
}

static int bc_rounds_phase(bc_run_t *b, bc_result_t *r)
{
    int rc = bc_agents_start(b, b->o->round_rate);
    if (rc != 0)
        return rc;
    double *prep = tm_calloc(b->o->rounds, sizeof *prep);
    if (!prep)
        return -ENOMEM;
    size_t nprep = 0;
    for (unsigned k = 0; k < b->o->rounds; k++) {
        if (bj_interrupted) {
            tm_free(prep);
            return -EINTR;
        }
        bc_round_q_t q = {.b = b};
        uint64_t deadline = tm_mono_ns() + BC_WAIT_NS;
        for (;;) {
            bc_loop_call(&b->srv, srv_round_now, &q);
            if (q.rc != -EBUSY)
                break;
            r->busy_waits++;
            if (tm_mono_ns() > deadline)
                break;
            bc_sleep_ms(1); /* the previous round is still preparing */
        }
        if (q.rc != 0) {
            fprintf(stderr, "bench_consistency: cns_round_now: %s\n", tm_strerror(q.rc));
            tm_free(prep);
            return q.rc;
        }
        r->rounds++;
        for (;;) {
            bc_loop_call(&b->srv, srv_round_state, &q);
            if (bc_final(q.state))
                break;
            if (tm_mono_ns() > deadline) {
                fprintf(stderr, "bench_consistency: round %" PRIu64 " still %s after %llu s\n", q.id, q.state,
                        (unsigned long long)(BC_WAIT_NS / 1000000000ull));
                tm_free(prep);
                return -ETIMEDOUT;
            }
            bc_sleep_ms(1); /* polling the round's state, with a deadline */
        }
        if (strcmp(q.state, "recorded") == 0)
            r->recorded++;
        else if (strcmp(q.state, "aborted") == 0)
            r->aborted++;
        else
            r->unrecorded++;
        if (strcmp(q.state, "recorded") != 0) {
            fprintf(stderr, "  N=%u round %u %s: %s\n", b->n, k + 1, q.state, q.reason);
            if (!r->first_reason[0])
                snprintf(r->first_reason, sizeof r->first_reason, "%s: %s", q.state, q.reason);
        }
        if (q.prepare_ms >= 0)
            prep[nprep++] = q.prepare_ms;
    }
    r->prepare_p50_ms = pct_double(prep, nprep, 0.50);
    r->prepare_p99_ms = pct_double(prep, nprep, 0.99);
    tm_free(prep);

    bc_times_q_t tq = {.b = b};
    bc_loop_call(&b->srv, srv_round_times, &tq);
    bj_sort_u64(tq.ns, tq.n);
    r->nround_times = tq.n;
    r->round_p50_ms = (double)bj_percentile(tq.ns, tq.n, 0.50) / 1e6;
    r->round_p99_ms = (double)bj_percentile(tq.ns, tq.n, 0.99) / 1e6;

    bc_holds_q_t hq;
    if ((rc = bc_collect_holds(b, &r->hold_p50_us, &r->hold_p99_us, &r->hold_max_us, &hq)) != 0)
        return rc;
    r->worst_member_p99_us = hq.worst_p99;
    r->agent_committed = hq.committed;
    r->agent_aborted = hq.aborted;
    r->agent_timed_out = hq.timed_out;
    r->agent_failed = hq.failed;
    r->agent_late = hq.late;
    r->late_max_us = hq.late_max_us;
    bc_agents_close(b);
    return 0;
}

static uint64_t bc_jnl_bytes(bc_run_t *b)
{
    jnl_stats_t st;
    jnl_get_stats(b->jnl, &st);
    return st.bytes_written;
}

/* One timed stretch of secs seconds; with rounds, one started every second
 * (at its start and each second after). MB/s into *mbs. */
static void bc_stretch(bc_run_t *b, bool rounds, double *mbs, bc_result_t *r)
{
    unsigned secs = b->o->secs;
    uint64_t t0 = tm_mono_ns(), b0 = bc_jnl_bytes(b);
    for (unsigned s = 0; s < secs; s++) {
        if (rounds) {
            bc_round_q_t q = {.b = b};
            bc_loop_call(&b->srv, srv_round_now, &q);
            if (q.rc == 0)
                r->load_rounds_started++;
            else if (q.rc == -EBUSY)
                r->load_rounds_busy++;
            else
                fprintf(stderr, "bench_consistency: cns_round_now: %s\n", tm_strerror(q.rc));
        }
        uint64_t next = t0 + (uint64_t)(s + 1) * 1000000000ull, now = tm_mono_ns();
        if (next > now)
            bc_sleep_ms((unsigned)((next - now) / 1000000ull));
    }
    uint64_t t1 = tm_mono_ns(), b1 = bc_jnl_bytes(b);
    *mbs = (double)(b1 - b0) / ((double)(t1 - t0) / 1e9) / 1e6;
}

static int bc_tput_phase(bc_run_t *b, bc_result_t *r)
{
    int rc = bc_agents_start(b, 0);
    if (rc != 0)
        return rc;
    /* The first seconds run faster (the points stage has no backlog yet,
     * the windows fill): nothing is timed until they are past. */
    bc_sleep_ms(b->o->warmup * 1000u);
    bc_round_q_t c0 = {.b = b};
    bc_loop_call(&b->srv, srv_round_state, &c0);
    unsigned runs = b->o->runs;
    double *with = tm_calloc(runs, sizeof *with), *without = tm_calloc(runs, sizeof *without),
           *ratio = tm_calloc(runs, sizeof *ratio);
    if (!with || !without || !ratio) {
        tm_free(with);
        tm_free(without);
        tm_free(ratio);
        return -ENOMEM;
    }
    for (unsigned k = 0; k < runs && !bj_interrupted; k++) {
        bool with_first = k % 2 == 1;
        if (with_first) {
            bc_stretch(b, true, &with[k], r);
            bc_stretch(b, false, &without[k], r);
        } else {
            bc_stretch(b, false, &without[k], r);
            bc_stretch(b, true, &with[k], r);
        }
        ratio[k] = without[k] > 0 ? with[k] / without[k] : 0;
        fprintf(stderr, "  N=%u throughput pair %u (%s first): without %.1f MB/s, with %.1f MB/s, ratio %.3f\n",
                b->n, k + 1, with_first ? "with" : "without", without[k], with[k], ratio[k]);
    }
    if (bj_interrupted) {
        tm_free(with);
        tm_free(without);
        tm_free(ratio);
        bc_agents_close(b);
        return -EINTR;
    }
    r->tput_runs = runs;
    r->tput_without_mbs = bj_median(without, runs);
    r->tput_with_mbs = bj_median(with, runs);
    r->ratio = bj_median(ratio, runs);
    r->ratio_of_medians = r->tput_without_mbs > 0 ? r->tput_with_mbs / r->tput_without_mbs : 0;
    tm_free(with);
    tm_free(without);
    tm_free(ratio);
    /* let the last round end before counting */
    bc_sleep_ms(b->o->hold_ms + 500);
    bc_round_q_t c1 = {.b = b};
    bc_loop_call(&b->srv, srv_round_state, &c1);
    r->load_rounds_recorded = (unsigned)(c1.recorded - c0.recorded);
    r->load_rounds_aborted = (unsigned)(c1.aborted - c0.aborted);
    bc_holds_q_t hq;
    rc = bc_collect_holds(b, &r->load_hold_p50_us, &r->load_hold_p99_us, &r->load_hold_max_us, &hq);
    if (rc == 0) {
        /* new agents (fresh stats) for this phase */
        r->load_timed_out = hq.timed_out;
        r->load_late = hq.late;
        r->load_late_max_us = hq.late_max_us;
    }
    bc_agents_close(b);
    return rc;
}

/* Reset this process's peak resident set (Linux: clear_refs 5), so each
 * group size gets its own; false when the kernel does not allow it. */
static bool bc_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* VmHWM of this process, KiB; 0 when unknown. */
static long bc_rss_peak(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long v = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
}

static int bc_one(const bc_opts_t *o, unsigned n, bc_result_t *r)
{
    bool rss_ok = bc_rss_reset();
    bc_run_t *b = tm_calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->o = o;
    b->n = n;
    memset(r, 0, sizeof *r);
    r->n = n;
    uint64_t t0 = tm_mono_ns();
    int rc = bc_setup(b);
    if (rc == 0) {
        r->setup_s = (double)(tm_mono_ns() - t0) / 1e9;
        r->agent_loops = b->nag;
        rc = bc_rounds_phase(b, r);
    }
    if (rc == 0)
        rc = bc_tput_phase(b, r);
    r->peak_rss_kib = rss_ok ? bc_rss_peak() : 0;
    bc_teardown(b);
    tm_free(b);
    if (rc == 0) {
        r->hold_target_known = n == 16 || n == 128;
        r->hold_target_us = n == 16 ? BC_TARGET_HOLD16_US : n == 128 ? BC_TARGET_HOLD128_US : 0;
        /* judged on the worst member's p99, every round counted */
        r->hold_target_met = r->hold_target_known && r->worst_member_p99_us <= r->hold_target_us;
        r->ratio_met = r->ratio >= BC_TARGET_RATIO;
    }
    return rc;
}

/* ---- output ---------------------------------------------------------------------------------------- */

static void bc_print(const bc_opts_t *o, const bc_result_t *res, unsigned nres, long rss_kib)
{
    printf("\nbench_consistency: %u crash rounds one after another (hold limit %u ms, each member writing %" PRIu64
           " B/s), then %u pairs of %u s unlimited writes without / with a round every second (after %u s of warm-up)\n",
           o->rounds, o->hold_ms, o->round_rate, o->runs, o->secs, o->warmup);
    printf("%-5s %-17s %-12s %-12s %-12s %-12s %-14s %-10s %-10s %-7s %s\n", "N", "rounds rec/abt/unr",
           "hold p50 ms", "hold p99 ms", "worst p99", "prep p50/p99", "round p50/p99", "no rounds", "rounds/s",
           "ratio", "targets");
    for (unsigned i = 0; i < nres; i++) {
        const bc_result_t *r = &res[i];
        char rounds[32], prep[32], rnd[32], tgt[96];
        snprintf(rounds, sizeof rounds, "%u/%u/%u", r->recorded, r->aborted, r->unrecorded);
        snprintf(prep, sizeof prep, "%.2f/%.2f", r->prepare_p50_ms, r->prepare_p99_ms);
        snprintf(rnd, sizeof rnd, "%.1f/%.1f", r->round_p50_ms, r->round_p99_ms);
        if (r->hold_target_known)
            snprintf(tgt, sizeof tgt, "hold p99<=%u ms %s; ratio>=%.2f %s", (unsigned)(r->hold_target_us / 1000),
                     r->hold_target_met ? "met" : "NOT met", BC_TARGET_RATIO, r->ratio_met ? "met" : "NOT met");
        else
            snprintf(tgt, sizeof tgt, "ratio>=%.2f %s", BC_TARGET_RATIO, r->ratio_met ? "met" : "NOT met");
        printf("%-5u %-17s %-12.3f %-12.3f %-12.3f %-12s %-14s %-10.1f %-10.1f %-7.3f %s\n", r->n, rounds,
               r->hold_p50_us / 1000.0, r->hold_p99_us / 1000.0, r->worst_member_p99_us / 1000.0, prep, rnd,
               r->tput_without_mbs, r->tput_with_mbs, r->ratio, tgt);
    }
    printf("hold: per member, from the agents' round records (pooled over members and rounds; worst = the largest "
           "per-member p99). prep: prepare sent .. commit sent; round: prepare sent .. group point recorded "
           "(cns_round_times). Throughput: journal bytes made durable per second, MB = 10^6 B; medians of %u; ratio: the median of the pairs' ratios.\n",
           o->runs);
    for (unsigned i = 0; i < nres; i++) {
        const bc_result_t *r = &res[i];
        printf("N=%u (%u agent loops): agents counted %" PRIu64 " committed, %" PRIu64 " aborted, %" PRIu64
               " timed out (%" PRIu64 " released late, at most %.3f ms past the limit), %" PRIu64
               " failed; under unlimited load %u rounds started (%u skipped busy), %u recorded, %u aborted, hold "
               "p50 %.3f p99 %.3f max %.3f ms, %" PRIu64 " member holds timed out (%" PRIu64
               " released late, at most %.3f ms past the limit); setup %.1f s; peak RSS of this size %.1f MiB "
               "(agents included)\n",
               r->n, r->agent_loops, r->agent_committed, r->agent_aborted, r->agent_timed_out, r->agent_late,
               r->late_max_us / 1000.0, r->agent_failed, r->load_rounds_started, r->load_rounds_busy,
               r->load_rounds_recorded, r->load_rounds_aborted, r->load_hold_p50_us / 1000.0,
               r->load_hold_p99_us / 1000.0, r->load_hold_max_us / 1000.0, r->load_timed_out, r->load_late,
               r->load_late_max_us / 1000.0, r->setup_s, r->peak_rss_kib / 1024.0);
        if (r->first_reason[0])
            printf("N=%u: first round without a group point: %s\n", r->n, r->first_reason);
    }
    printf("peak RSS %.1f MiB (the whole run; the agents' streams and the server's windows are in it)\n",
           rss_kib / 1024.0);

    json_t *groups = json_array();
    for (unsigned i = 0; i < nres; i++) {
        const bc_result_t *r = &res[i];
        json_t *g = json_object();
        json_object_set_new(g, "members", json_integer(r->n));
        json_object_set_new(g, "agent_loops", json_integer(r->agent_loops));
        json_object_set_new(g, "rounds", json_integer(r->rounds));
        json_object_set_new(g, "rounds_recorded", json_integer(r->recorded));
        json_object_set_new(g, "rounds_aborted", json_integer(r->aborted));
        json_object_set_new(g, "rounds_unrecorded", json_integer(r->unrecorded));
        json_object_set_new(g, "agent_rounds", json_pack("{s:I,s:I,s:I,s:I}", "committed",
                                                         (json_int_t)r->agent_committed, "aborted",
                                                         (json_int_t)r->agent_aborted, "timed_out",
                                                         (json_int_t)r->agent_timed_out, "failed",
                                                         (json_int_t)r->agent_failed));
        json_object_set_new(g, "hold_late", json_integer((json_int_t)r->agent_late));
        json_object_set_new(g, "hold_late_max_ms", json_real(r->late_max_us / 1000.0));
        json_object_set_new(g, "hold_p50_ms", json_real(r->hold_p50_us / 1000.0));
        json_object_set_new(g, "hold_p99_ms", json_real(r->hold_p99_us / 1000.0));
        json_object_set_new(g, "hold_max_ms", json_real(r->hold_max_us / 1000.0));
        json_object_set_new(g, "hold_worst_member_p99_ms", json_real(r->worst_member_p99_us / 1000.0));
        json_object_set_new(g, "prepare_p50_ms", json_real(r->prepare_p50_ms));
        json_object_set_new(g, "prepare_p99_ms", json_real(r->prepare_p99_ms));
        json_object_set_new(g, "round_p50_ms", json_real(r->round_p50_ms));
        json_object_set_new(g, "round_p99_ms", json_real(r->round_p99_ms));
        json_object_set_new(g, "round_times", json_integer((json_int_t)r->nround_times));
        json_object_set_new(g, "hold_target_ms", r->hold_target_known ? json_real(r->hold_target_us / 1000.0)
                                                                      : json_null());
        json_object_set_new(g, "hold_target_met", r->hold_target_known ? json_boolean(r->hold_target_met)
                                                                       : json_null());
        json_object_set_new(g, "tput_no_rounds_mbs", json_real(r->tput_without_mbs));
        json_object_set_new(g, "tput_rounds_mbs", json_real(r->tput_with_mbs));
        json_object_set_new(g, "baseline", json_string("the same unlimited ingest workload without rounds"));
        json_object_set_new(g, "ratio", json_real(r->ratio));
        json_object_set_new(g, "ratio_of_medians", json_real(r->ratio_of_medians));
        json_object_set_new(g, "ratio_target", json_real(BC_TARGET_RATIO));
        json_object_set_new(g, "ratio_met", json_boolean(r->ratio_met));
        json_object_set_new(g, "tput_runs", json_integer(r->tput_runs));
        json_object_set_new(g, "load_rounds_started", json_integer(r->load_rounds_started));
        json_object_set_new(g, "load_rounds_busy", json_integer(r->load_rounds_busy));
        json_object_set_new(g, "load_rounds_recorded", json_integer(r->load_rounds_recorded));
        json_object_set_new(g, "load_rounds_aborted", json_integer(r->load_rounds_aborted));
        json_object_set_new(g, "load_hold_p50_ms", json_real(r->load_hold_p50_us / 1000.0));
        json_object_set_new(g, "load_hold_p99_ms", json_real(r->load_hold_p99_us / 1000.0));
        json_object_set_new(g, "load_hold_max_ms", json_real(r->load_hold_max_us / 1000.0));
        json_object_set_new(g, "load_hold_timed_out", json_integer((json_int_t)r->load_timed_out));
        json_object_set_new(g, "load_hold_late", json_integer((json_int_t)r->load_late));
        json_object_set_new(g, "load_hold_late_max_ms", json_real(r->load_late_max_us / 1000.0));
        json_object_set_new(g, "peak_rss_kib", r->peak_rss_kib ? json_integer(r->peak_rss_kib) : json_null());
        json_array_append_new(groups, g);
    }
    json_t *top = json_object();
    json_object_set_new(top, "bench", json_string("consistency"));
    json_object_set_new(top, "hold_limit_ms", json_integer(o->hold_ms));
    json_object_set_new(top, "rounds_per_size", json_integer(o->rounds));
    json_object_set_new(top, "round_rate_per_member", json_integer((json_int_t)o->round_rate));
    json_object_set_new(top, "secs", json_integer(o->secs));
    json_object_set_new(top, "warmup_secs", json_integer(o->warmup));
    json_object_set_new(top, "runs", json_integer(o->runs));
    json_object_set_new(top, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(top, "groups", groups);
    json_object_set_new(top, "peak_rss_kib", json_integer(rss_kib));
    char *s = json_dumps(top, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(top);
}

/* ---- main ------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_consistency [OPTIONS]\n"
            "  --members LIST   group sizes, comma-separated (default 2,16,128)\n"
            "  --rounds R       crash rounds one after another per size (default 50, at most %u)\n"
            "  --hold-ms MS     the crash rounds' hold limit (default %u)\n"
            "  --round-rate B   bytes/s each member writes during the rounds (default 256K)\n"
            "  --secs T         seconds per throughput stretch (default 3)\n"
            "  --warmup T       seconds of unlimited writes before the first stretch (default 5)\n"
            "  --runs K         throughput pairs (without / with rounds, order alternating; default 3)\n"
            "  --disk SIZE      each member's disk (default 4M)\n"
            "  --agent-loops L  loop threads the agents are spread over (default one per %u members, at most %u)\n"
            "  --seed S         workload seed (default 1)\n"
            "  --dir DIR        scratch folder (default $TMPDIR, else the build folder)\n",
            BC_MAX_ROUNDS, CNS_DEFAULT_HOLD_MS, BC_AGENTS_PER_LOOP, BC_MAX_AGENT_LOOPS);
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    bc_opts_t o = {.sizes = {2, 16, 128}, .nsizes = 3, .rounds = 50, .secs = 3, .warmup = 5, .runs = 3,
                   .hold_ms = CNS_DEFAULT_HOLD_MS, .round_rate = 256u << 10, .disk = 4u << 20, .seed = 1};
    o.dir = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : BC_DEFAULT_DIR;
    static const struct option lo[] = {
        {"members", required_argument, NULL, 'm'}, {"rounds", required_argument, NULL, 'r'},
        {"hold-ms", required_argument, NULL, 'H'}, {"round-rate", required_argument, NULL, 'w'},
        {"secs", required_argument, NULL, 't'},    {"runs", required_argument, NULL, 'k'},
        {"warmup", required_argument, NULL, 'W'},  {"agent-loops", required_argument, NULL, 'L'},
        {"disk", required_argument, NULL, 'd'},    {"seed", required_argument, NULL, 's'},
        {"dir", required_argument, NULL, 'D'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'm':
            ok = bj_parse_list(optarg, o.sizes, BC_MAX_SIZES, &o.nsizes);
            for (unsigned i = 0; ok && i < o.nsizes; i++)
                ok = o.sizes[i] >= 1 && o.sizes[i] <= 1024;
            break;
        case 'r':
            ok = parse_uint(optarg, 1, BC_MAX_ROUNDS, &o.rounds);
            break;
        case 'H':
            ok = parse_uint(optarg, 1, CNS_MAX_HOLD_MS, &o.hold_ms);
            break;
        case 'w':
            ok = bj_parse_size(optarg, &o.round_rate);
            break;
        case 't':
            ok = parse_uint(optarg, 1, 3600, &o.secs);
            break;
        case 'W':
            ok = parse_uint(optarg, 0, 3600, &o.warmup);
            break;
        case 'L':
            ok = parse_uint(optarg, 1, BC_MAX_AGENT_LOOPS, &o.agent_loops);
            break;
        case 'k':
            ok = parse_uint(optarg, 1, 100, &o.runs);
            break;
        case 'd':
            ok = bj_parse_size(optarg, &o.disk) && o.disk % 512 == 0;
            break;
        case 's':
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case 'D':
            o.dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            ok = false;
        }
        if (!ok) {
            if (ch != '?')
                fprintf(stderr, "bench_consistency: bad value for --%s: %s\n",
                        ch == 'm' ? "members" : "option", optarg ? optarg : "");
            usage(stderr);
            return 2;
        }
    }
    /* The server writes to agents that may be gone, as `tidemark serve`. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = bc_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "bench_consistency: seed %" PRIu64 ", scratch in %s\n", o.seed, o.dir);
    bc_result_t res[BC_MAX_SIZES];
    unsigned nres = 0;
    int rc = 0;
    for (unsigned i = 0; i < o.nsizes; i++) {
        fprintf(stderr, "bench_consistency: group of %" PRIu64 "...\n", o.sizes[i]);
        rc = bc_one(&o, (unsigned)o.sizes[i], &res[nres]);
        if (rc != 0) {
            fprintf(stderr, "bench_consistency: group of %" PRIu64 ": stopped: %s\n", o.sizes[i], tm_strerror(rc));
            break;
        }
        nres++;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (rc == 0)
        bc_print(&o, res, nres, ru.ru_maxrss);
    return rc == 0 ? 0 : 1;
}
