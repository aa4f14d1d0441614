/*
 * bench_ingest: agents -> `tidemark serve` -> journal over loopback, against
 * the journal alone and plain sequential writes, measured in the same run.
 *
 * For each cell (write size x number of agents) and each of --runs rounds:
 *
 *   1. ingest: a fresh data folder, the real `tidemark serve` binary on a
 *      port it picks, and that many agent sessions from this process (one
 *      libuv loop, bi_load.c) streaming RECORDS frames of random, raw
 *      (uncompressed) writes within a window of unacked bytes each, for
 *      --seconds. Figures: payload bytes acked (made durable) per second,
 *      each frame's send-to-ACK latency, the server's CPU time and peak RSS
 *      (/proc), and this process's CPU time (the agents' side);
 *   2. the journal alone: jnl_append of records the size of the ones ingest
 *      writes for those frames, with as many outstanding as the agents'
 *      windows allow (capped by ingest's journal budget), no network;
 *   3. the baseline: the bytes ingest's journal wrote, as write() +
 *      fdatasync batches of the mean batch size the journal achieved in 2,
 *      into a fresh file on the same filesystem (performance.md); then the
 *      same into a file preallocated first, as the journal's segments are.
 *
 * The three alternate so drift of a shared disk hits them alike; the page
 * cache is pre-warmed before each (bench/journal/bj_prewarm.c says why).
 * Each cell reports medians over the rounds; a ratio is the median of the
 * per-round ratios. Then the memory cell: --idle sessions that finish their
 * handshake and stay idle, plus --idle-busy streaming 64 KiB writes, with
 * the server's VmRSS sampled every 100 ms and its VmHWM at the end.
 *
 * Output: a table on stdout, then one JSON object on the last line.
 * MB = 10^6 bytes, KiB/MiB = 2^10/2^20 bytes.
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

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "bench/ingest/bi.h"
#include "ingest/ingest.h"
#include "journal/format.h"
#include "journal/journal.h"

#ifndef BI_TIDEMARK
#define BI_TIDEMARK "tidemark"
#endif

#define BI_MAX_LIST 16
#define BI_MAX_AGENTS 20000u
#define BI_MAX_RUNS 100
#define BI_POOL_MIN (16u << 20)
#define BI_SAMPLE_MS 100u

/* The targets. */
#define BI_TARGET_RECORD 65536u
#define BI_TARGET_AGENTS 64u
#define BI_TARGET_RATIO 0.7
#define BI_TARGET_RSS_MIB 512.0

typedef struct bi_opts {
    uint64_t sizes[BI_MAX_LIST];
    unsigned nsizes;
    uint64_t agents[BI_MAX_LIST];
    unsigned nagents;
    unsigned per_frame; /* 0: 16 writes below 64 KiB, else 4 */
    uint64_t window;
    double seconds;
    uint64_t bytes;
    unsigned runs;
    unsigned idle, idle_busy;
    const char *dir;
    const char *tidemark;
    unsigned long server_nofile;
    bool quick, prewarm, no_idle;
} bi_opts_t;

/* One round of one cell. */
typedef struct bi_round {
    bi_load_result_t ig;
    bi_proc_t p_hs, p_end; /* the server after the handshakes, after the last ack */
    uint64_t jrec;         /* journal payload per frame */
    uint64_t ig_disk_bytes; /* what ingest's journal wrote for the frames acked */
    unsigned jappenders;
    bj_jnl_result_t j;
    bj_base_result_t b;  /* plain: a new file growing with each write */
    bj_base_result_t bp; /* the same into a file preallocated up front */
} bi_round_t;

typedef struct bi_summary {
    double mb_s, j_mb_s, base_mb_s, ratio, j_ratio, ig_vs_j, pre_mb_s, pre_ratio;
    double p50_us, p99_us, j_p50_us, j_p99_us;
    double srv_cpu_s, srv_loop_cpu_s, srv_cpu_per_gb, client_cpu_s, client_cpu_per_gb;
    double srv_hwm_mib, batch_kib;
} bi_summary_t;

/* One round of the memory cell. */
typedef struct bi_idle_round {
    bi_proc_t p_start, p_idle, p_all, p_end;
    long max_rss_kib; /* sampled while the busy ones streamed */
    bi_load_result_t busy;
    unsigned accept_warnings;
    char accept_first[256];
} bi_idle_round_t;

volatile sig_atomic_t bj_interrupted;

static void bi__on_signal(int sig)
{
    (void)sig;
    bj_interrupted = 1;
}

static void bi__usage(FILE *f)
{
    fprintf(f,
            "usage: bench_ingest [options]\n"
            "  --agents LIST      agent sessions per cell (default 1,16,64,256)\n"
            "  --sizes LIST       write sizes (default 4K,64K; K/M suffixes ok)\n"
            "  --per-frame N      writes per RECORDS frame (default 16 below 64 KiB, else 4)\n"
            "  --window BYTES     unacked raw bytes per agent (default 4M; the server's WELCOME caps it)\n"
            "  --seconds S        per run: stream for S seconds (default 3)\n"
            "  --bytes N          ... or until N payload bytes were sent (default 4G)\n"
            "  --runs R           rounds per cell; ingest, journal and baseline alternate (default 3)\n"
            "  --idle N           the memory cell: N idle sessions (default 1000) ...\n"
            "  --idle-busy N      ... plus N busy ones with 64 KiB writes (default 64)\n"
            "  --no-idle          skip the memory cell\n"
            "  --dir D            make the scratch folder bench-tmp-XXXXXX inside D (default .)\n"
            "  --tidemark PATH    the tidemark binary (default: the one built with this bench)\n"
            "  --server-nofile N  the server's RLIMIT_NOFILE soft limit (default: this shell's)\n"
            "  --quick            a few seconds in all, for smoke testing\n"
            "  --no-prewarm       do not warm the page cache before each run\n"
            "  --help\n"
            "Prints a table, then one JSON object on the last line. MB = 10^6 bytes.\n");
}

static bool bi__parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

enum { BI_OPT_AGENTS = 256, BI_OPT_SIZES, BI_OPT_PER_FRAME, BI_OPT_WINDOW, BI_OPT_SECONDS, BI_OPT_BYTES,
       BI_OPT_RUNS, BI_OPT_IDLE, BI_OPT_IDLE_BUSY, BI_OPT_NO_IDLE, BI_OPT_DIR, BI_OPT_TIDEMARK,
       BI_OPT_SERVER_NOFILE, BI_OPT_NO_PREWARM };

/* 0, 1 for --help, or -1 after printing what was wrong. */
static int bi__parse_opts(int argc, char **argv, bi_opts_t *o)
{
    static const struct option longopts[] = {
        {"agents", required_argument, NULL, BI_OPT_AGENTS},
        {"sizes", required_argument, NULL, BI_OPT_SIZES},
        {"per-frame", required_argument, NULL, BI_OPT_PER_FRAME},
        {"window", required_argument, NULL, BI_OPT_WINDOW},
        {"seconds", required_argument, NULL, BI_OPT_SECONDS},
        {"bytes", required_argument, NULL, BI_OPT_BYTES},
        {"runs", required_argument, NULL, BI_OPT_RUNS},
        {"idle", required_argument, NULL, BI_OPT_IDLE},
        {"idle-busy", required_argument, NULL, BI_OPT_IDLE_BUSY},
        {"no-idle", no_argument, NULL, BI_OPT_NO_IDLE},
        {"dir", required_argument, NULL, BI_OPT_DIR},
        {"tidemark", required_argument, NULL, BI_OPT_TIDEMARK},
        {"server-nofile", required_argument, NULL, BI_OPT_SERVER_NOFILE},
        {"no-prewarm", no_argument, NULL, BI_OPT_NO_PREWARM},
        {"quick", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool set_agents = false, set_secs = false, set_bytes = false, set_runs = false, set_idle = false,
         set_busy = false;
    unsigned long v;
    char *end;
    int c;

    memset(o, 0, sizeof *o);
    o->dir = ".";
    o->tidemark = BI_TIDEMARK;
    o->prewarm = true;
    o->window = 4u << 20;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case BI_OPT_AGENTS:
            if (!bj_parse_list(optarg, o->agents, BI_MAX_LIST, &o->nagents))
                goto bad;
            set_agents = true;
            break;
        case BI_OPT_SIZES:
            if (!bj_parse_list(optarg, o->sizes, BI_MAX_LIST, &o->nsizes))
                goto bad;
            break;
        case BI_OPT_PER_FRAME:
            if (!bi__parse_uint(optarg, WIRE_MAX_BATCH_RECORDS, &v) || v == 0)
                goto bad;
            o->per_frame = (unsigned)v;
            break;
        case BI_OPT_WINDOW:
            if (!bj_parse_size(optarg, &o->window) || o->window > UINT32_MAX)
                goto bad;
            break;
        case BI_OPT_SECONDS:
            errno = 0;
            o->seconds = strtod(optarg, &end);
            if (errno || *end || !(o->seconds > 0 && o->seconds <= 3600))
                goto bad;
            set_secs = true;
            break;
        case BI_OPT_BYTES:
            if (!bj_parse_size(optarg, &o->bytes))
                goto bad;
            set_bytes = true;
            break;
        case BI_OPT_RUNS:
            if (!bi__parse_uint(optarg, BI_MAX_RUNS, &v) || v == 0)
                goto bad;
            o->runs = (unsigned)v;
            set_runs = true;
            break;
        case BI_OPT_IDLE:
            if (!bi__parse_uint(optarg, BI_MAX_AGENTS, &v))
                goto bad;
            o->idle = (unsigned)v;
            set_idle = true;
            break;
        case BI_OPT_IDLE_BUSY:
            if (!bi__parse_uint(optarg, BI_MAX_AGENTS, &v))
                goto bad;
            o->idle_busy = (unsigned)v;
            set_busy = true;
            break;
        case BI_OPT_NO_IDLE:
            o->no_idle = true;
            break;
        case BI_OPT_DIR:
            o->dir = optarg;
            break;
        case BI_OPT_TIDEMARK:
            o->tidemark = optarg;
            break;
        case BI_OPT_SERVER_NOFILE:
            if (!bi__parse_uint(optarg, 1u << 24, &v) || v == 0)
                goto bad;
            o->server_nofile = v;
            break;
        case BI_OPT_NO_PREWARM:
            o->prewarm = false;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'h':
            bi__usage(stdout);
            return 1;
        default:
            bi__usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench_ingest: unexpected argument '%s'\n", argv[optind]);
        bi__usage(stderr);
        return -1;
    }

    /* Defaults, after parsing so explicit flags win over --quick in any order. */
    if (o->nsizes == 0) {
        o->sizes[0] = 4096;
        o->sizes[1] = 65536;
        o->nsizes = 2;
    }
    if (!set_agents) {
        static const uint64_t full[] = {1, 16, 64, 256}, quick[] = {1, 16};
        memcpy(o->agents, o->quick ? quick : full, o->quick ? sizeof quick : sizeof full);
        o->nagents = o->quick ? 2 : 4;
    }
    if (!set_secs)
        o->seconds = o->quick ? 0.3 : 3.0;
    if (!set_bytes)
        o->bytes = o->quick ? (64u << 20) : (4ull << 30);
    if (!set_runs)
        o->runs = o->quick ? 1 : 3;
    if (!set_idle)
        o->idle = o->quick ? 100 : 1000;
    if (!set_busy)
        o->idle_busy = o->quick ? 8 : 64;

    for (unsigned i = 0; i < o->nsizes; i++) {
        if (o->sizes[i] % WIRE_SECTOR || o->sizes[i] > WIRE_MAX_WRITE) {
            fprintf(stderr, "bench_ingest: write size %" PRIu64 " must be a multiple of %u, at most %u\n",
                    o->sizes[i], WIRE_SECTOR, WIRE_MAX_WRITE);
            return -1;
        }
    }
    for (unsigned i = 0; i < o->nagents; i++) {
        if (o->agents[i] > BI_MAX_AGENTS) {
            fprintf(stderr, "bench_ingest: at most %u agents\n", BI_MAX_AGENTS);
            return -1;
        }
    }
    return 0;

bad:
    fprintf(stderr, "bench_ingest: bad value '%s' for --%s\n", optarg, longopts[c - BI_OPT_AGENTS].name);
    return -1;
}

static unsigned bi__per_frame(const bi_opts_t *o, uint64_t size)
{
    unsigned n = o->per_frame ? o->per_frame : size < 65536 ? 16 : 4;
    /* A frame must fit the window, the protocol's batch limit and its record limit. */
    while (n > 1 && ((uint64_t)n * size > o->window || (uint64_t)n * size > WIRE_MAX_BATCH_DATA))
        n--;
    return n;
}

static double bi__mb_s(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / 1e6 / secs : 0;
}

/* The server's log goes with its data, unless the run failed: then it is
 * kept (outside the scratch folder, which is removed) and named. */
static void bi__drop_log(const char *log, int rc)
{
    if (rc == 0 || rc == -EINTR) {
        unlink(log);
        return;
    }
    char kept[PATH_MAX];
    const char *base = strrchr(log, '/');
    if (snprintf(kept, sizeof kept, "bench_ingest-%d-%s", (int)getpid(), base ? base + 1 : log) < (int)sizeof kept &&
        rename(log, kept) == 0)
        fprintf(stderr, "bench_ingest: the server's log is kept in %s\n", kept);
    else
        unlink(log);
}

/* ---- one round of a throughput cell ---------------------------------------------- */

typedef struct bi_ctx {
    const bi_opts_t *o;
    const char *tmpdir;
    const bj_pool_t *pool;
    const bi_machines_t *machines;
    unsigned seq; /* names scratch folders */
} bi_ctx_t;

/* The ingest part: a fresh server, `agents` sessions streaming. */
static int bi__run_ingest(bi_ctx_t *x, uint64_t size, unsigned agents, uint64_t warm, bi_round_t *r)
{
    char data[PATH_MAX], log[PATH_MAX];
    bi_server_t srv;
    bi_load_t *L = NULL;
    int rc;

    if (snprintf(data, sizeof data, "%s/srv-%u", x->tmpdir, x->seq) >= (int)sizeof data ||
        snprintf(log, sizeof log, "%s/srv-%u.log", x->tmpdir, x->seq) >= (int)sizeof log)
        return -ENAMETOOLONG;
    x->seq++;
    rc = bi_server_prepare(data, x->machines);
    if (rc)
        return rc;
    if (warm && (rc = bj_prewarm_in(x->tmpdir, warm, x->pool)) != 0)
        goto out_rm;
    rc = bi_server_start(x->o->tidemark, data, log, x->o->server_nofile, &srv);
    if (rc)
        goto out_rm;
    bi_load_cfg_t cfg = {
        .addr = srv.addr,
        .record = (size_t)size,
        .per_frame = bi__per_frame(x->o, size),
        .window = (uint32_t)x->o->window,
        .max_agents = agents,
    };
    rc = bi_load_new(&cfg, x->pool, &L);
    if (rc) {
        fprintf(stderr, "bench_ingest: cannot make the load generator: %d\n", rc);
        goto out_stop;
    }
    r->jrec = bi_load_journal_record(L);
    rc = bi_load_connect(L, x->machines, 0, agents, true, 60);
    if (rc)
        goto out_stop;
    if ((rc = bi_proc_read(srv.pid, &r->p_hs)) != 0)
        goto out_stop;
    rc = bi_load_stream(L, x->o->seconds, x->o->bytes, 0, NULL, NULL, &r->ig);
    if (rc)
        goto out_stop;
    rc = bi_proc_read(srv.pid, &r->p_end);
    /* Every frame acked went into one journal record of jrec payload bytes. */
    r->ig_disk_bytes = r->ig.frames * (r->jrec + JNL_REC_OVERHEAD);

out_stop:
    bi_load_free(L);
    if (bi_server_stop(&srv) != 0 && rc == 0)
        rc = -EIO;
out_rm:;
    int rm = bj_rmtree(data);
    bi__drop_log(log, rc);
    return rc ? rc : rm;
}

static int bi__round(bi_ctx_t *x, uint64_t size, unsigned agents, uint64_t warm, bi_round_t *r)
{
    char path[PATH_MAX];
    int rc = bi__run_ingest(x, size, agents, warm, r);
    if (rc || bj_interrupted)
        return rc ? rc : -EINTR;

    /* The journal alone: as many appends outstanding as the agents' windows
     * hold frames, but no more bytes queued than ingest's budget allows. */
    unsigned per_frame = bi__per_frame(x->o, size);
    uint64_t frame_raw = size * per_frame;
    uint64_t window = x->o->window < INGEST_DEFAULT_WINDOW ? x->o->window : INGEST_DEFAULT_WINDOW;
    uint64_t n = (uint64_t)agents * (window / frame_raw);
    uint64_t cap = INGEST_DEFAULT_BUDGET / r->jrec;
    if (n > cap)
        n = cap;
    r->jappenders = n ? (unsigned)n : 1;
    bj_cfg_t jc = {
        .record = (size_t)r->jrec,
        .appenders = r->jappenders,
        .seconds = x->o->seconds,
        .budget = x->o->bytes,
        .submit_thread = true, /* the server's loop resubmits, not the journal's writer */
    };
    if (snprintf(path, sizeof path, "%s/jnl-%u", x->tmpdir, x->seq++) >= (int)sizeof path)
        return -ENAMETOOLONG;
    if (mkdir(path, 0700) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_ingest: mkdir %s: %s\n", path, strerror(errno));
        return rc;
    }
    if (warm && (rc = bj_prewarm_in(x->tmpdir, warm, x->pool)) != 0)
        return rc;
    rc = bj_run_journal(path, &jc, x->pool, &r->j);
    int rm = bj_rmtree(path);
    if (rc || rm || bj_interrupted)
        return rc ? rc : rm ? rm : -EINTR;

    /* The baseline: ingest's journal bytes in the journal's batch size. */
    uint64_t total = r->ig_disk_bytes;
    uint64_t batch = r->j.batches ? r->j.disk_bytes / r->j.batches : total;
    uint64_t chunks = batch ? (total + batch / 2) / batch : 1;
    if (chunks == 0)
        chunks = 1;
    if (snprintf(path, sizeof path, "%s/base-%u", x->tmpdir, x->seq++) >= (int)sizeof path)
        return -ENAMETOOLONG;
    if (warm && (rc = bj_prewarm_in(x->tmpdir, total, x->pool)) != 0)
        return rc;
    rc = bj_run_baseline(path, total, chunks, false, x->pool, &r->b);
    if (rc || bj_interrupted)
        return rc ? rc : -EINTR;
    /* The stricter bar: the journal's segments are preallocated, so the
     * same writes into a file fallocated (untimed) before. */
    if (warm && (rc = bj_prewarm_in(x->tmpdir, total, x->pool)) != 0)
        return rc;
    return bj_run_baseline(path, total, chunks, true, x->pool, &r->bp);
}

/* ---- the memory cell ------------------------------------------------------------------ */

typedef struct bi_sampler {
    pid_t pid;
    long max_rss_kib;
} bi_sampler_t;

static void bi__sample(void *arg)
{
    bi_sampler_t *s = arg;
    bi_proc_t p;
    if (bi_proc_read(s->pid, &p) == 0 && p.rss_kib > s->max_rss_kib)
        s->max_rss_kib = p.rss_kib;
}

static int bi__idle_round(bi_ctx_t *x, bi_idle_round_t *r)
{
    char data[PATH_MAX], log[PATH_MAX];
    const bi_opts_t *o = x->o;
    bi_server_t srv;
    bi_load_t *L = NULL;
    int rc;

    if (snprintf(data, sizeof data, "%s/srv-%u", x->tmpdir, x->seq) >= (int)sizeof data ||
        snprintf(log, sizeof log, "%s/srv-%u.log", x->tmpdir, x->seq) >= (int)sizeof log)
        return -ENAMETOOLONG;
    x->seq++;
    rc = bi_server_prepare(data, x->machines);
    if (rc)
        return rc;
    if (o->prewarm && (rc = bj_prewarm_in(x->tmpdir, (uint64_t)(o->seconds * 1.2e9), x->pool)) != 0)
        goto out_rm;
    rc = bi_server_start(o->tidemark, data, log, o->server_nofile, &srv);
    if (rc)
        goto out_rm;
    bi_load_cfg_t cfg = {
        .addr = srv.addr,
        .record = 65536,
        .per_frame = bi__per_frame(o, 65536),
        .window = (uint32_t)o->window,
        .max_agents = o->idle + o->idle_busy,
    };
    if ((rc = bi_proc_read(srv.pid, &r->p_start)) != 0)
        goto out_stop;
    rc = bi_load_new(&cfg, x->pool, &L);
    if (rc)
        goto out_stop;
    /* The idle ones first: machines [0, idle); then the busy ones after them. */
    if (o->idle && (rc = bi_load_connect(L, x->machines, 0, o->idle, false, 120)) != 0)
        goto out_stop;
    if ((rc = bi_proc_read(srv.pid, &r->p_idle)) != 0)
        goto out_stop;
    if (o->idle_busy && (rc = bi_load_connect(L, x->machines, o->idle, o->idle_busy, true, 60)) != 0)
        goto out_stop;
    if ((rc = bi_proc_read(srv.pid, &r->p_all)) != 0)
        goto out_stop;
    bi_sampler_t smp = {srv.pid, r->p_all.rss_kib};
    if (o->idle_busy) {
        rc = bi_load_stream(L, o->seconds, o->bytes, BI_SAMPLE_MS, bi__sample, &smp, &r->busy);
        if (rc)
            goto out_stop;
    }
    bi__sample(&smp);
    r->max_rss_kib = smp.max_rss_kib;
    rc = bi_proc_read(srv.pid, &r->p_end);

out_stop:
    bi_load_free(L);
    if (bi_server_stop(&srv) != 0 && rc == 0)
        rc = -EIO;
    /* libuv logs a refused accept as "ingest: accept: <reason>" (EMFILE when out of descriptors). */
    r->accept_warnings = bi_server_log_grep(&srv, "accept:", r->accept_first, sizeof r->accept_first);
    if (r->accept_warnings)
        fprintf(stderr, "bench_ingest: the server logged %u accept failure(s), the first: %s\n",
                r->accept_warnings, r->accept_first);
out_rm:;
    int rm = bj_rmtree(data);
    bi__drop_log(log, rc);
    return rc ? rc : rm;
}

/* ---- summaries and output ---------------------------------------------------------- */

static void bi__summarise(const bi_round_t *r, unsigned n, bi_summary_t *s)
{
    double v[BI_MAX_RUNS];
#define BI_MEDIAN(field, expr)                                                                             \
    do {                                                                                                   \
        for (unsigned i = 0; i < n; i++)                                                                   \
            v[i] = (expr);                                                                                 \
        s->field = bj_median(v, n);                                                                        \
    } while (0)
#define BI_IG(i) bi__mb_s(r[i].ig.payload_bytes, r[i].ig.secs)
#define BI_J(i) bi__mb_s(r[i].j.payload_bytes, r[i].j.secs)
#define BI_B(i) bi__mb_s(r[i].b.bytes, r[i].b.secs)
#define BI_GB(i) ((double)r[i].ig.payload_bytes / 1e9)
#define BI_P(i) bi__mb_s(r[i].bp.bytes, r[i].bp.secs)
    BI_MEDIAN(mb_s, BI_IG(i));
    BI_MEDIAN(j_mb_s, BI_J(i));
    BI_MEDIAN(base_mb_s, BI_B(i));
    BI_MEDIAN(ratio, BI_B(i) > 0 ? BI_IG(i) / BI_B(i) : 0);
    BI_MEDIAN(j_ratio, BI_B(i) > 0 ? BI_J(i) / BI_B(i) : 0);
    BI_MEDIAN(ig_vs_j, BI_J(i) > 0 ? BI_IG(i) / BI_J(i) : 0);
    BI_MEDIAN(pre_mb_s, BI_P(i));
    BI_MEDIAN(pre_ratio, BI_P(i) > 0 ? BI_IG(i) / BI_P(i) : 0);
    BI_MEDIAN(p50_us, r[i].ig.p50_us);
    BI_MEDIAN(p99_us, r[i].ig.p99_us);
    BI_MEDIAN(j_p50_us, r[i].j.p50_us);
    BI_MEDIAN(j_p99_us, r[i].j.p99_us);
    BI_MEDIAN(srv_cpu_s, r[i].p_end.cpu_s - r[i].p_hs.cpu_s);
    BI_MEDIAN(srv_loop_cpu_s, r[i].p_end.loop_cpu_s - r[i].p_hs.loop_cpu_s);
    BI_MEDIAN(srv_cpu_per_gb, BI_GB(i) > 0 ? (r[i].p_end.cpu_s - r[i].p_hs.cpu_s) / BI_GB(i) : 0);
    BI_MEDIAN(client_cpu_s, r[i].ig.client_cpu_s);
    BI_MEDIAN(client_cpu_per_gb, BI_GB(i) > 0 ? r[i].ig.client_cpu_s / BI_GB(i) : 0);
    BI_MEDIAN(srv_hwm_mib, (double)r[i].p_end.hwm_kib / 1024);
    BI_MEDIAN(batch_kib, r[i].j.batches ? (double)r[i].j.disk_bytes / (double)r[i].j.batches / 1024 : 0);
#undef BI_P
#undef BI_GB
#undef BI_B
#undef BI_J
#undef BI_IG
#undef BI_MEDIAN
}

static void bi__print_table(const bi_opts_t *o, const bi_summary_t *sums)
{
    char sz[32];
    unsigned c = 0;
    printf("%-7s %6s | %7s %7s %7s | %6s %6s %6s | %7s %6s | %8s %8s | %7s %7s %7s %7s | %7s\n", "write",
           "agents", "ingest", "journal", "base", "ratio", "j/base", "ig/j", "pre", "ig/pre", "p50 us", "p99 us",
           "srv CPU", "loop", "CPU/GB", "agt/GB", "RSS MiB");
    for (unsigned si = 0; si < o->nsizes; si++) {
        for (unsigned ai = 0; ai < o->nagents; ai++, c++) {
            const bi_summary_t *s = &sums[c];
            printf("%-7s %6" PRIu64 " | %7.1f %7.1f %7.1f | %6.3f %6.3f %6.3f | %7.1f %6.3f | %8.0f %8.0f | %7.2f %7.2f "
                   "%7.2f %7.2f | %7.1f\n",
                   bj_size_str(o->sizes[si], sz, sizeof sz), o->agents[ai], s->mb_s, s->j_mb_s, s->base_mb_s,
                   s->ratio, s->j_ratio, s->ig_vs_j, s->pre_mb_s, s->pre_ratio, s->p50_us, s->p99_us, s->srv_cpu_s, s->srv_loop_cpu_s,
                   s->srv_cpu_per_gb, s->client_cpu_per_gb, s->srv_hwm_mib);
        }
    }
}

static double bi__median_of(double *v, unsigned n)
{
    return bj_median(v, n);
}

typedef struct bi_idle_summary {
    double rss_start_mib, rss_idle_mib, per_idle_kib, rss_all_mib, max_rss_mib, hwm_mib, busy_mb_s, busy_p50_us,
        busy_p99_us, hwm_worst_mib;
} bi_idle_summary_t;

static void bi__idle_summarise(const bi_opts_t *o, const bi_idle_round_t *r, unsigned n, bi_idle_summary_t *s)
{
    double v[BI_MAX_RUNS];
    memset(s, 0, sizeof *s);
#define BI_MED(field, expr)                                                                                \
    do {                                                                                                   \
        for (unsigned i = 0; i < n; i++)                                                                   \
            v[i] = (expr);                                                                                 \
        s->field = bi__median_of(v, n);                                                                    \
    } while (0)
    BI_MED(rss_start_mib, (double)r[i].p_start.rss_kib / 1024);
    BI_MED(rss_idle_mib, (double)r[i].p_idle.rss_kib / 1024);
    BI_MED(per_idle_kib, o->idle ? (double)(r[i].p_idle.rss_kib - r[i].p_start.rss_kib) / o->idle : 0);
    BI_MED(rss_all_mib, (double)r[i].p_all.rss_kib / 1024);
    BI_MED(max_rss_mib, (double)r[i].max_rss_kib / 1024);
    BI_MED(hwm_mib, (double)r[i].p_end.hwm_kib / 1024);
    BI_MED(busy_mb_s, bi__mb_s(r[i].busy.payload_bytes, r[i].busy.secs));
    BI_MED(busy_p50_us, r[i].busy.p50_us);
    BI_MED(busy_p99_us, r[i].busy.p99_us);
#undef BI_MED
    for (unsigned i = 0; i < n; i++)
        if ((double)r[i].p_end.hwm_kib / 1024 > s->hwm_worst_mib)
            s->hwm_worst_mib = (double)r[i].p_end.hwm_kib / 1024;
}

static void bi__print_proc(const char *name, const bi_proc_t *p)
{
    printf("\"%s\":{\"cpu_s\":%.2f,\"loop_cpu_s\":%.2f,\"rss_kib\":%ld,\"hwm_kib\":%ld,\"threads\":%ld,"
           "\"write_bytes\":%" PRIu64 "}",
           name, p->cpu_s, p->loop_cpu_s, p->rss_kib, p->hwm_kib, p->threads, p->write_bytes);
}

static void bi__print_json(const bi_opts_t *o, const bi_round_t *rounds, const bi_summary_t *sums,
                           const bi_idle_round_t *idle, const bi_idle_summary_t *is, long nproc, long rss_kib)
{
    double target_ratio = -1, target_pre = -1;
    unsigned c = 0;

    printf("{\"bench\":\"ingest\",\"unit_mb\":1000000,\"runs\":%u,\"nproc\":%ld,\"peak_rss_kib\":%ld,"
           "\"seconds\":%.3f,\"bytes_budget\":%" PRIu64 ",\"window\":%" PRIu64 ",\"server_window\":%u,"
           "\"server_budget\":%u,\"compression\":\"off (codec 0, random data)\",\"prewarm\":%s,"
           "\"baseline\":\"write+fdatasync of ingest's journal bytes in the journal-alone mean batch size, into a new file (prealloc: a file fallocated first)\","
           "\"cells\":[",
           o->runs, nproc, rss_kib, o->seconds, o->bytes, o->window, INGEST_DEFAULT_WINDOW, INGEST_DEFAULT_BUDGET,
           o->prewarm ? "true" : "false");
    for (unsigned si = 0; si < o->nsizes; si++) {
        for (unsigned ai = 0; ai < o->nagents; ai++, c++) {
            const bi_summary_t *s = &sums[c];
            const bi_round_t *r = &rounds[(size_t)c * o->runs];
            if (o->sizes[si] == BI_TARGET_RECORD && o->agents[ai] == BI_TARGET_AGENTS)
                target_ratio = s->ratio, target_pre = s->pre_ratio;
            printf("%s{\"write_bytes\":%" PRIu64 ",\"agents\":%" PRIu64 ",\"writes_per_frame\":%u,"
                   "\"journal_record_bytes\":%" PRIu64 ",\"journal_appenders\":%u,"
                   "\"mb_s\":%.2f,\"journal_mb_s\":%.2f,\"baseline_mb_s\":%.2f,\"ratio\":%.4f,"
                   "\"journal_ratio\":%.4f,\"ingest_vs_journal\":%.4f,\"prealloc_baseline_mb_s\":%.2f,"
                   "\"prealloc_ratio\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                   "\"journal_p50_us\":%.1f,\"journal_p99_us\":%.1f,\"server_cpu_s\":%.3f,"
                   "\"server_loop_cpu_s\":%.3f,\"server_cpu_s_per_gb\":%.3f,\"agents_cpu_s\":%.3f,"
                   "\"agents_cpu_s_per_gb\":%.3f,\"server_peak_rss_mib\":%.1f,\"journal_batch_kib\":%.1f,"
                   "\"rounds\":[",
                   c ? "," : "", o->sizes[si], o->agents[ai], bi__per_frame(o, o->sizes[si]), r[0].jrec,
                   r[0].jappenders, s->mb_s, s->j_mb_s, s->base_mb_s, s->ratio, s->j_ratio, s->ig_vs_j, s->pre_mb_s,
                   s->pre_ratio, s->p50_us,
                   s->p99_us, s->j_p50_us, s->j_p99_us, s->srv_cpu_s, s->srv_loop_cpu_s, s->srv_cpu_per_gb,
                   s->client_cpu_s, s->client_cpu_per_gb, s->srv_hwm_mib, s->batch_kib);
            for (unsigned k = 0; k < o->runs; k++) {
                const bi_round_t *q = &r[k];
                double im = bi__mb_s(q->ig.payload_bytes, q->ig.secs), jm = bi__mb_s(q->j.payload_bytes, q->j.secs),
                       bm = bi__mb_s(q->b.bytes, q->b.secs), pm = bi__mb_s(q->bp.bytes, q->bp.secs);
                printf("%s{\"ingest\":{\"secs\":%.4f,\"frames\":%" PRIu64 ",\"writes\":%" PRIu64
                       ",\"payload_bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"journal_bytes\":%" PRIu64
                       ",\"mb_s\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"latencies\":%" PRIu64
                       ",\"agents_cpu_s\":%.3f,",
                       k ? "," : "", q->ig.secs, q->ig.frames, q->ig.writes, q->ig.payload_bytes, q->ig.wire_bytes,
                       q->ig_disk_bytes, im, q->ig.p50_us, q->ig.p99_us, q->ig.max_us, q->ig.lat_kept,
                       q->ig.client_cpu_s);
                bi__print_proc("server_after_handshakes", &q->p_hs);
                printf(",");
                bi__print_proc("server_at_end", &q->p_end);
                printf("},\"journal\":{\"secs\":%.4f,\"records\":%" PRIu64 ",\"payload_bytes\":%" PRIu64
                       ",\"disk_bytes\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"mb_s\":%.2f,\"p50_us\":%.1f,"
                       "\"p99_us\":%.1f,\"fdatasync_ns\":%" PRIu64 ",\"pwrite_ns\":%" PRIu64 "},"
                       "\"baseline\":{\"secs\":%.4f,\"bytes\":%" PRIu64 ",\"syncs\":%" PRIu64 ",\"write_ns\":%" PRIu64
                       ",\"fdatasync_ns\":%" PRIu64 ",\"mb_s\":%.2f},\"prealloc_baseline\":{\"secs\":%.4f,"
                       "\"write_ns\":%" PRIu64 ",\"fdatasync_ns\":%" PRIu64 ",\"mb_s\":%.2f},\"ratio\":%.4f,"
                       "\"journal_ratio\":%.4f,\"prealloc_ratio\":%.4f}",
                       q->j.secs, q->j.records, q->j.payload_bytes, q->j.disk_bytes, q->j.batches, jm, q->j.p50_us,
                       q->j.p99_us, q->j.sync_ns, q->j.write_ns, q->b.secs, q->b.bytes, q->b.syncs, q->b.write_ns,
                       q->b.sync_ns, bm, q->bp.secs, q->bp.write_ns, q->bp.sync_ns, pm, bm > 0 ? im / bm : 0,
                       bm > 0 ? jm / bm : 0, pm > 0 ? im / pm : 0);
            }
            printf("]}");
        }
    }
    printf("]");
    if (idle) {
        printf(",\"memory\":{\"idle_agents\":%u,\"busy_agents\":%u,\"busy_write_bytes\":65536,"
               "\"rss_start_mib\":%.1f,\"rss_idle_mib\":%.1f,\"per_idle_agent_kib\":%.2f,\"rss_all_connected_mib\":%.1f,"
               "\"max_sampled_rss_mib\":%.1f,\"peak_rss_mib\":%.1f,\"peak_rss_worst_mib\":%.1f,\"busy_mb_s\":%.2f,"
               "\"busy_p50_us\":%.1f,\"busy_p99_us\":%.1f,\"rounds\":[",
               o->idle, o->idle_busy, is->rss_start_mib, is->rss_idle_mib, is->per_idle_kib, is->rss_all_mib,
               is->max_rss_mib, is->hwm_mib, is->hwm_worst_mib, is->busy_mb_s, is->busy_p50_us, is->busy_p99_us);
        for (unsigned k = 0; k < o->runs; k++) {
            const bi_idle_round_t *q = &idle[k];
            printf("%s{", k ? "," : "");
            bi__print_proc("start", &q->p_start);
            printf(",");
            bi__print_proc("idle_connected", &q->p_idle);
            printf(",");
            bi__print_proc("all_connected", &q->p_all);
            printf(",");
            bi__print_proc("end", &q->p_end);
            printf(",\"max_sampled_rss_kib\":%ld,\"busy_secs\":%.4f,\"busy_payload_bytes\":%" PRIu64
                   ",\"busy_mb_s\":%.2f,\"accept_warnings\":%u}",
                   q->max_rss_kib, q->busy.secs, q->busy.payload_bytes,
                   bi__mb_s(q->busy.payload_bytes, q->busy.secs), q->accept_warnings);
        }
        printf("]}");
    }
    printf(",\"targets\":{\"ratio_64_agents_64k\":{\"min\":%.2f,", BI_TARGET_RATIO);
    if (target_ratio < 0)
        printf("\"value\":null,\"prealloc_value\":null,\"met\":null}");
    else
        printf("\"value\":%.4f,\"prealloc_value\":%.4f,\"met\":%s}", target_ratio, target_pre,
               target_ratio >= BI_TARGET_RATIO ? "true" : "false");
    printf(",\"peak_rss_1000_idle\":{\"max_mib\":%.0f,", BI_TARGET_RSS_MIB);
    if (!idle || o->idle < 1000)
        printf("\"value\":null,\"met\":null}}}\n");
    else
        printf("\"value\":%.1f,\"met\":%s}}}\n", is->hwm_worst_mib, is->hwm_worst_mib < BI_TARGET_RSS_MIB ? "true" : "false");
}

/* Raise this process's descriptor limit: every session is a socket here. */
static void bi__raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)need + 64)
        fprintf(stderr, "bench_ingest: warning: %u sessions need about %u descriptors; the limit is %llu\n", need,
                need + 64, (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    bi_opts_t o;
    char tmpdir[PATH_MAX];
    uint8_t *pool_buf = NULL;
    bi_round_t *rounds = NULL;
    bi_summary_t *sums = NULL;
    bi_idle_round_t *idle = NULL;
    bi_machines_t machines = {0};
    int rc = bi__parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    tm_log_set_level(TM_LOG_WARN);
    struct sigaction sa = {.sa_handler = bi__on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned most = 0;
    for (unsigned i = 0; i < o.nagents; i++)
        most = o.agents[i] > most ? (unsigned)o.agents[i] : most;
    if (!o.no_idle && o.idle + o.idle_busy > most)
        most = o.idle + o.idle_busy;
    bi_server_note_nofile();
    bi__raise_nofile(most);

    size_t ncells = (size_t)o.nsizes * o.nagents;
    uint64_t max_frame = 0;
    for (unsigned i = 0; i < o.nsizes; i++)
        if (o.sizes[i] * bi__per_frame(&o, o.sizes[i]) > max_frame)
            max_frame = o.sizes[i] * bi__per_frame(&o, o.sizes[i]);
    if (max_frame < 65536u * bi__per_frame(&o, 65536))
        max_frame = 65536u * bi__per_frame(&o, 65536);
    bj_pool_t pool = {NULL, max_frame * 4 > BI_POOL_MIN ? (size_t)max_frame * 4 : BI_POOL_MIN};
    pool_buf = tm_malloc(pool.len);
    rounds = tm_calloc(ncells * o.runs, sizeof *rounds);
    sums = tm_calloc(ncells, sizeof *sums);
    idle = tm_calloc(o.runs, sizeof *idle);
    machines.n = most;
    machines.secret = tm_malloc((size_t)most * sizeof *machines.secret);
    if (!pool_buf || !rounds || !sums || !idle || !machines.secret) {
        fprintf(stderr, "bench_ingest: out of memory\n");
        rc = 1;
        goto out_free;
    }
    bj_fill_random(pool_buf, pool.len, tm_random_u64());
    pool.base = pool_buf;
    if (tm_random_bytes(machines.secret, (size_t)most * BI_SECRET_LEN) != 0) {
        fprintf(stderr, "bench_ingest: no random bytes for the secrets\n");
        rc = 1;
        goto out_free;
    }
    if (access(o.tidemark, X_OK) != 0) {
        fprintf(stderr, "bench_ingest: cannot run %s: %s (see --tidemark)\n", o.tidemark, strerror(errno));
        rc = 1;
        goto out_free;
    }

    if (snprintf(tmpdir, sizeof tmpdir, "%s/bench-tmp-XXXXXX", o.dir) >= (int)sizeof tmpdir || !mkdtemp(tmpdir)) {
        fprintf(stderr, "bench_ingest: cannot make a scratch folder in %s: %s\n", o.dir, strerror(errno));
        rc = 1;
        goto out_free;
    }
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(stderr, "bench_ingest: scratch %s, server %s, %u round(s) per cell, each %.2f s or %" PRIu64
                    " payload bytes, nproc %ld\n",
            tmpdir, o.tidemark, o.runs, o.seconds, o.bytes, nproc);

    bi_ctx_t x = {&o, tmpdir, &pool, &machines, 0};
    for (unsigned k = 0; k < o.runs && rc == 0; k++) {
        for (size_t c = 0; c < ncells && rc == 0; c++) {
            uint64_t size = o.sizes[c / o.nagents];
            unsigned agents = (unsigned)o.agents[c % o.nagents];
            bi_round_t *r = &rounds[c * o.runs + k];
            /* Warm what the run will write: a guess at ~1.2 GB/s at first,
             * then a little over the most an earlier round of the cell wrote. */
            uint64_t warm = (uint64_t)(o.seconds * 1.2e9);
            if (warm > o.bytes + o.bytes / 16)
                warm = o.bytes + o.bytes / 16;
            if (k > 0) {
                uint64_t top = 0;
                for (unsigned e = 0; e < k; e++) {
                    const bi_round_t *q = &rounds[c * o.runs + e];
                    top = q->ig_disk_bytes > top ? q->ig_disk_bytes : top;
                    top = q->j.disk_bytes > top ? q->j.disk_bytes : top;
                }
                warm = top + top / 4;
            }
            rc = bi__round(&x, size, agents, o.prewarm ? warm : 0, r);
            if (rc == 0 && bj_interrupted)
                rc = -EINTR;
            if (rc != 0)
                break;
            double im = bi__mb_s(r->ig.payload_bytes, r->ig.secs), jm = bi__mb_s(r->j.payload_bytes, r->j.secs),
                   bm = bi__mb_s(r->b.bytes, r->b.secs);
            fprintf(stderr,
                    "  round %u/%u %6" PRIu64 " B x %3u agents: ingest %7.1f MB/s, journal %7.1f, baseline %7.1f, "
                    "ratio %.3f, p50 %.0f us, server CPU %.2f s\n",
                    k + 1, o.runs, size, agents, im, jm, bm, bm > 0 ? im / bm : 0, r->ig.p50_us,
                    r->p_end.cpu_s - r->p_hs.cpu_s);
        }
        if (rc == 0 && !o.no_idle) {
            rc = bi__idle_round(&x, &idle[k]);
            if (rc == 0 && bj_interrupted)
                rc = -EINTR;
            if (rc == 0)
                fprintf(stderr,
                        "  round %u/%u memory: %u idle + %u busy: server RSS %ld KiB idle, peak %ld KiB; busy %.1f MB/s\n",
                        k + 1, o.runs, o.idle, o.idle_busy, idle[k].p_idle.rss_kib, idle[k].p_end.hwm_kib,
                        bi__mb_s(idle[k].busy.payload_bytes, idle[k].busy.secs));
        }
    }
    int rm = bj_rmtree(tmpdir);
    if (rc != 0) {
        fprintf(stderr, "bench_ingest: stopped: %s\n", rc == -EINTR ? "interrupted" : "a round failed");
        rc = 1;
        goto out_free;
    }
    if (rm != 0)
        fprintf(stderr, "bench_ingest: could not remove %s\n", tmpdir);

    for (size_t c = 0; c < ncells; c++)
        bi__summarise(&rounds[c * o.runs], o.runs, &sums[c]);
    bi_idle_summary_t is;
    if (!o.no_idle)
        bi__idle_summarise(&o, idle, o.runs, &is);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fflush(stderr);
    printf("ingest: agents -> tidemark serve -> journal over loopback, vs the journal alone and write+fdatasync; "
           "medians of %u round(s)\n"
           "MB/s of write payload made durable. ratio = ingest / base, j/base = journal alone / base, ig/j = ingest "
           "/ journal alone.\n"
           "pre: the baseline into a file preallocated first, as the journal's segments are; ig/pre = ingest / it.\n"
           "p50/p99: a frame's send to its ACK. srv CPU: server CPU seconds in the run (loop = its event-loop "
           "thread); CPU/GB and agt/GB: server\n"
           "and load-generator CPU seconds per GB of payload. RSS: the server's peak (VmHWM). Data random, sent "
           "raw (no lz4).\n",
           o.runs);
    bi__print_table(&o, sums);
    if (!o.no_idle) {
        printf("\nmemory: %u idle sessions (handshake done) + %u busy ones with 64 KiB writes, server RSS "
               "(medians):\n"
               "  at start %.1f MiB; with the idle ones %.1f MiB (%.2f KiB each); all connected %.1f MiB; "
               "while streaming at most %.1f MiB;\n"
               "  peak (VmHWM) %.1f MiB, worst round %.1f MiB; busy ones %.1f MB/s, p50 %.0f us, p99 %.0f us\n",
               o.idle, o.idle_busy, is.rss_start_mib, is.rss_idle_mib, is.per_idle_kib, is.rss_all_mib,
               is.max_rss_mib, is.hwm_mib, is.hwm_worst_mib, is.busy_mb_s, is.busy_p50_us, is.busy_p99_us);
    }
    for (size_t c = 0; c < ncells; c++) {
        if (o.sizes[c / o.nagents] == BI_TARGET_RECORD && o.agents[c % o.nagents] == BI_TARGET_AGENTS)
            printf("target: 64 agents x 64 KiB at %.3f of the raw baseline (at least %.2f): %s; %.3f of the "
                   "preallocated one\n",
                   sums[c].ratio, BI_TARGET_RATIO, sums[c].ratio >= BI_TARGET_RATIO ? "met" : "MISSED",
                   sums[c].pre_ratio);
    }
    if (!o.no_idle && o.idle >= 1000)
        printf("target: peak RSS with %u agents connected %.1f MiB (under %.0f MiB): %s\n", o.idle + o.idle_busy,
               is.hwm_worst_mib, BI_TARGET_RSS_MIB, is.hwm_worst_mib < BI_TARGET_RSS_MIB ? "met" : "MISSED");
    printf("peak RSS of this process %ld KiB, nproc %ld\n", ru.ru_maxrss, nproc);
    bi__print_json(&o, rounds, sums, o.no_idle ? NULL : idle, o.no_idle ? NULL : &is, nproc, ru.ru_maxrss);

out_free:
    tm_free(machines.secret);
    tm_free(idle);
    tm_free(sums);
    tm_free(rounds);
    tm_free(pool_buf);
    return rc;
}
