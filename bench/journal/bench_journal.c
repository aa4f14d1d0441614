/*
 * bench_journal: group-commit throughput and append-to-durable latency of
 * the journal, against plain sequential writes with the same fdatasync
 * pattern, measured in the same run.
 *
 * For each cell (record size x concurrent appenders) and each of --runs
 * rounds, it runs the journal in a fresh folder, then the baseline: the
 * bytes the journal wrote, as the same number of write() + fdatasync
 * batches of the journal's mean batch size, to a fresh file in the same
 * folder. Journal and baseline alternate so drift of a shared disk hits both
 * alike; each cell reports medians over the rounds, its ratio being the
 * median of the per-round ratios (journal payload MB/s / baseline MB/s).
 * The journal's record headers are part of its bytes but not of its
 * payload, so the ratio charges them to the journal. A second baseline
 * writes the same batches into a file preallocated up front (the journal's
 * segments are preallocated too, which makes its buffered writes cheaper
 * than appends to a growing file): its ratio is reported beside the first.
 *
 * Before each timed run the page cache is pre-warmed (bj_prewarm.c), and
 * the journal's system calls are timed through jnl_io_t so the report can
 * say where a batch's time goes.
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
#include "bench/journal/bj.h"
#include "journal/journal.h"

#define BJ_MAX_LIST 16
#define BJ_MAX_APPENDERS 65536u
#define BJ_MAX_RUNS 100
/* The pool the payloads are cut from; the baseline writes its batches from it too. */
#define BJ_POOL_MIN (16u << 20)

/* The target: 64 KiB records, 16+ appenders, at least this ratio. */
#define BJ_TARGET_RECORD 65536u
#define BJ_TARGET_APPENDERS 16u
#define BJ_TARGET_RATIO 0.85

typedef struct bj_opts {
    uint64_t sizes[BJ_MAX_LIST];
    unsigned nsizes;
    uint64_t appenders[BJ_MAX_LIST];
    unsigned nappenders;
    double seconds;
    uint64_t bytes;
    unsigned runs;
    const char *dir;
    bool quick;
    bool prewarm;
    bool submit_thread;
} bj_opts_t;

/* One round of one cell: the journal and its baseline. */
typedef struct bj_round {
    bj_jnl_result_t j;
    bj_base_result_t b;  /* plain: a new file growing with each write */
    bj_base_result_t bp; /* the same into a file preallocated up front */
} bj_round_t;

/* A cell's figures: medians over its rounds. */
typedef struct bj_summary {
    double mb_s, disk_mb_s, base_mb_s, ratio;
    double p50_us, p99_us, max_us;
    double fsyncs_s, base_fsyncs_s, appends_s;
    double batch_kib, batch_records;
    /* Per batch, microseconds: the journal's wall time split by where the
     * writer was (other = encoding, copying, checksums, callbacks, wake-ups),
     * and the baseline's. */
    double j_total_us, j_write_us, j_sync_us, j_roll_us, j_other_us;
    double b_total_us, b_write_us, b_sync_us;
    double pre_mb_s, pre_ratio, p_total_us, p_write_us, p_sync_us;
} bj_summary_t;

volatile sig_atomic_t bj_interrupted;

static void bj__on_signal(int sig)
{
    (void)sig;
    bj_interrupted = 1;
}

static void bj__usage(FILE *f)
{
    fprintf(f,
            "usage: bench_journal [options]\n"
            "  --sizes LIST      record payload sizes (default 4096,65536,1048576; K/M suffixes ok)\n"
            "  --appenders LIST  concurrent appenders (default 1,16,256)\n"
            "  --seconds S       per round: stop submitting after S seconds (default 3)\n"
            "  --bytes N         ... or after N payload bytes, whichever comes first (default 1G)\n"
            "  --runs R          rounds per cell, journal and baseline alternating (default 3)\n"
            "  --dir D           make the scratch folder bench-tmp-XXXXXX inside D (default .)\n"
            "  --quick           a few seconds in all, for smoke testing\n"
            "  --no-prewarm      do not warm the page cache before each run (see bj_prewarm.c)\n"
            "  --submit-thread   resubmit from a thread of the bench's, not from the completion callback\n"
            "  --help\n"
            "Prints a table, then one JSON object on the last line. MB = 10^6 bytes.\n");
}

enum { BJ_OPT_SIZES = 256, BJ_OPT_APPENDERS, BJ_OPT_SECONDS, BJ_OPT_BYTES, BJ_OPT_RUNS, BJ_OPT_DIR, BJ_OPT_NO_PREWARM,
       BJ_OPT_SUBMIT_THREAD };

/* 0, 1 for --help, or -1 after printing what was wrong. */
static int bj__parse_opts(int argc, char **argv, bj_opts_t *o)
{
    static const struct option longopts[] = {
        {"sizes", required_argument, NULL, BJ_OPT_SIZES},
        {"appenders", required_argument, NULL, BJ_OPT_APPENDERS},
        {"seconds", required_argument, NULL, BJ_OPT_SECONDS},
        {"bytes", required_argument, NULL, BJ_OPT_BYTES},
        {"runs", required_argument, NULL, BJ_OPT_RUNS},
        {"dir", required_argument, NULL, BJ_OPT_DIR},
        {"quick", no_argument, NULL, 'q'},
        {"no-prewarm", no_argument, NULL, BJ_OPT_NO_PREWARM},
        {"submit-thread", no_argument, NULL, BJ_OPT_SUBMIT_THREAD},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool set_sizes = false, set_app = false, set_secs = false, set_bytes = false, set_runs = false;
    int c;
    char *end;

    memset(o, 0, sizeof *o);
    o->dir = ".";
    o->prewarm = true;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case BJ_OPT_SIZES:
            if (!bj_parse_list(optarg, o->sizes, BJ_MAX_LIST, &o->nsizes))
                goto bad;
            set_sizes = true;
            break;
        case BJ_OPT_APPENDERS:
            if (!bj_parse_list(optarg, o->appenders, BJ_MAX_LIST, &o->nappenders))
                goto bad;
            set_app = true;
            break;
        case BJ_OPT_SECONDS:
            errno = 0;
            o->seconds = strtod(optarg, &end);
            if (errno || *end || !(o->seconds > 0 && o->seconds <= 3600))
                goto bad;
            set_secs = true;
            break;
        case BJ_OPT_BYTES:
            if (!bj_parse_size(optarg, &o->bytes))
                goto bad;
            set_bytes = true;
            break;
        case BJ_OPT_RUNS: {
            errno = 0;
            long r = strtol(optarg, &end, 10);
            if (errno || *end || r < 1 || r > BJ_MAX_RUNS)
                goto bad;
            o->runs = (unsigned)r;
            set_runs = true;
            break;
        }
        case BJ_OPT_DIR:
            o->dir = optarg;
            break;
        case 'q':
            o->quick = true;
            break;
        case BJ_OPT_NO_PREWARM:
            o->prewarm = false;
            break;
        case BJ_OPT_SUBMIT_THREAD:
            o->submit_thread = true;
            break;
        case 'h':
            bj__usage(stdout);
            return 1;
        default:
            bj__usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench_journal: unexpected argument '%s'\n", argv[optind]);
        bj__usage(stderr);
        return -1;
    }

    /* Defaults, after parsing so explicit flags win over --quick in any order. */
    if (!set_sizes) {
        static const uint64_t def[] = {4096, 65536, 1048576};
        memcpy(o->sizes, def, sizeof def);
        o->nsizes = 3;
    }
    if (!set_app) {
        static const uint64_t full[] = {1, 16, 256}, quick[] = {1, 16};
        memcpy(o->appenders, o->quick ? quick : full, o->quick ? sizeof quick : sizeof full);
        o->nappenders = o->quick ? 2 : 3;
    }
    if (!set_secs)
        o->seconds = o->quick ? 0.2 : 3.0;
    if (!set_bytes)
        o->bytes = o->quick ? (32u << 20) : (1ull << 30);
    if (!set_runs)
        o->runs = o->quick ? 1 : 3;

    for (unsigned i = 0; i < o->nsizes; i++) {
        if (o->sizes[i] > JNL_DEFAULT_MAX_RECORD) {
            fprintf(stderr, "bench_journal: record size %" PRIu64 " is over the journal's limit %u\n",
                    o->sizes[i], JNL_DEFAULT_MAX_RECORD);
            return -1;
        }
    }
    for (unsigned i = 0; i < o->nappenders; i++) {
        if (o->appenders[i] > BJ_MAX_APPENDERS) {
            fprintf(stderr, "bench_journal: at most %u appenders\n", BJ_MAX_APPENDERS);
            return -1;
        }
    }
    return 0;

bad:
    fprintf(stderr, "bench_journal: bad value '%s' for --%s\n", optarg, longopts[c - BJ_OPT_SIZES].name);
    return -1;
}

static double bj__mb_s(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / 1e6 / secs : 0;
}

static void bj__summarise(const bj_round_t *r, unsigned n, bj_summary_t *s)
{
    double v[BJ_MAX_RUNS];
#define BJ_MEDIAN(field, expr)                                                                             \
    do {                                                                                                   \
        for (unsigned i = 0; i < n; i++)                                                                   \
            v[i] = (expr);                                                                                 \
        s->field = bj_median(v, n);                                                                        \
    } while (0)
    BJ_MEDIAN(mb_s, bj__mb_s(r[i].j.payload_bytes, r[i].j.secs));
    BJ_MEDIAN(disk_mb_s, bj__mb_s(r[i].j.disk_bytes, r[i].j.secs));
    BJ_MEDIAN(base_mb_s, bj__mb_s(r[i].b.bytes, r[i].b.secs));
    BJ_MEDIAN(ratio, r[i].b.secs > 0 ? bj__mb_s(r[i].j.payload_bytes, r[i].j.secs) /
                                           bj__mb_s(r[i].b.bytes, r[i].b.secs)
                                     : 0);
    BJ_MEDIAN(p50_us, r[i].j.p50_us);
    BJ_MEDIAN(p99_us, r[i].j.p99_us);
    BJ_MEDIAN(max_us, r[i].j.max_us);
    BJ_MEDIAN(fsyncs_s, r[i].j.secs > 0 ? (double)r[i].j.batches / r[i].j.secs : 0);
    BJ_MEDIAN(base_fsyncs_s, r[i].b.secs > 0 ? (double)r[i].b.syncs / r[i].b.secs : 0);
    BJ_MEDIAN(appends_s, r[i].j.secs > 0 ? (double)r[i].j.records / r[i].j.secs : 0);
    BJ_MEDIAN(batch_kib, r[i].j.batches ? (double)r[i].j.disk_bytes / (double)r[i].j.batches / 1024 : 0);
    BJ_MEDIAN(batch_records, r[i].j.batches ? (double)r[i].j.records / (double)r[i].j.batches : 0);
#define BJ_PER(x, nb) ((nb) ? (double)(x) / (double)(nb) / 1e3 : 0)
    BJ_MEDIAN(j_total_us, BJ_PER(r[i].j.secs * 1e9, r[i].j.batches));
    BJ_MEDIAN(j_write_us, BJ_PER(r[i].j.write_ns, r[i].j.batches));
    BJ_MEDIAN(j_sync_us, BJ_PER(r[i].j.sync_ns, r[i].j.batches));
    BJ_MEDIAN(j_roll_us, BJ_PER(r[i].j.roll_ns, r[i].j.batches));
    BJ_MEDIAN(j_other_us, BJ_PER(r[i].j.secs * 1e9 - (double)(r[i].j.write_ns + r[i].j.sync_ns + r[i].j.roll_ns),
                                 r[i].j.batches));
    BJ_MEDIAN(b_total_us, BJ_PER(r[i].b.secs * 1e9, r[i].b.syncs));
    BJ_MEDIAN(b_write_us, BJ_PER(r[i].b.write_ns, r[i].b.syncs));
    BJ_MEDIAN(b_sync_us, BJ_PER(r[i].b.sync_ns, r[i].b.syncs));
    BJ_MEDIAN(pre_mb_s, bj__mb_s(r[i].bp.bytes, r[i].bp.secs));
    BJ_MEDIAN(pre_ratio, r[i].bp.secs > 0 ? bj__mb_s(r[i].j.payload_bytes, r[i].j.secs) /
                                               bj__mb_s(r[i].bp.bytes, r[i].bp.secs)
                                         : 0);
    BJ_MEDIAN(p_total_us, BJ_PER(r[i].bp.secs * 1e9, r[i].bp.syncs));
    BJ_MEDIAN(p_write_us, BJ_PER(r[i].bp.write_ns, r[i].bp.syncs));
    BJ_MEDIAN(p_sync_us, BJ_PER(r[i].bp.sync_ns, r[i].bp.syncs));
#undef BJ_PER
#undef BJ_MEDIAN
}

/* One round of one cell: journal, then the baseline, then the preallocated
 * baseline, in tmpdir. warm_bytes is
 * what the journal run is expected to write (0: no pre-warming). */
static int bj__round(const char *tmpdir, const bj_cfg_t *cfg, unsigned round, const bj_pool_t *pool,
                     uint64_t warm_bytes, bj_round_t *out)
{
    char path[PATH_MAX];
    int rc;

    if (snprintf(path, sizeof path, "%s/jnl-%zu-%u-%u", tmpdir, cfg->record, cfg->appenders, round) >=
        (int)sizeof path)
        return -ENAMETOOLONG;
    if (mkdir(path, 0700) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_journal: mkdir %s: %s\n", path, strerror(errno));
        return rc;
    }
    if (warm_bytes && (rc = bj_prewarm_in(tmpdir, warm_bytes, pool)) != 0)
        return rc;
    rc = bj_run_journal(path, cfg, pool, &out->j);
    int rm = bj_rmtree(path);
    if (rc != 0)
        return rc;
    if (rm != 0)
        return rm;
    if (bj_interrupted)
        return -EINTR;

    if (snprintf(path, sizeof path, "%s/base-%zu-%u-%u", tmpdir, cfg->record, cfg->appenders, round) >=
        (int)sizeof path)
        return -ENAMETOOLONG;
    if (warm_bytes && (rc = bj_prewarm_in(tmpdir, out->j.disk_bytes, pool)) != 0)
        return rc;
    rc = bj_run_baseline(path, out->j.disk_bytes, out->j.batches, false, pool, &out->b);
    if (rc != 0 || bj_interrupted)
        return rc ? rc : -EINTR;
    if (warm_bytes && (rc = bj_prewarm_in(tmpdir, out->j.disk_bytes, pool)) != 0)
        return rc;
    return bj_run_baseline(path, out->j.disk_bytes, out->j.batches, true, pool, &out->bp);
}

static void bj__print_json(const bj_opts_t *o, const bj_round_t *rounds, const bj_summary_t *sums,
                           long nproc, long rss_kib)
{
    double worst = -1;
    unsigned c = 0;

    printf("{\"bench\":\"journal\",\"unit_mb\":1000000,\"runs\":%u,\"nproc\":%ld,\"peak_rss_kib\":%ld,"
           "\"seconds\":%.3f,\"bytes_budget\":%" PRIu64 ",\"segment_size\":%u,\"prewarm\":%s,\"submit\":\"%s\",\"cells\":[",
           o->runs, nproc, rss_kib, o->seconds, o->bytes, JNL_DEFAULT_SEGMENT, o->prewarm ? "true" : "false",
           o->submit_thread ? "thread" : "callback");
    for (unsigned si = 0; si < o->nsizes; si++) {
        for (unsigned ai = 0; ai < o->nappenders; ai++, c++) {
            const bj_summary_t *s = &sums[c];
            const bj_round_t *r = &rounds[(size_t)c * o->runs];
            if (o->sizes[si] == BJ_TARGET_RECORD && o->appenders[ai] >= BJ_TARGET_APPENDERS &&
                (worst < 0 || s->ratio < worst))
                worst = s->ratio;
            printf("%s{\"record_bytes\":%" PRIu64 ",\"appenders\":%" PRIu64 ",\"mb_s\":%.2f,\"disk_mb_s\":%.2f,"
                   "\"baseline_mb_s\":%.2f,\"ratio\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
                   "\"fsyncs_s\":%.1f,\"baseline_fsyncs_s\":%.1f,\"appends_s\":%.1f,\"mean_batch_kib\":%.2f,"
                   "\"mean_batch_records\":%.2f,\"per_batch_us\":{\"journal\":{\"total\":%.1f,\"pwrite\":%.1f,"
                   "\"fdatasync\":%.1f,\"roll\":%.1f,\"other\":%.1f},\"baseline\":{\"total\":%.1f,\"write\":%.1f,"
                   "\"fdatasync\":%.1f},\"prealloc_baseline\":{\"total\":%.1f,\"write\":%.1f,\"fdatasync\":%.1f}},"
                   "\"prealloc_baseline_mb_s\":%.2f,\"prealloc_ratio\":%.4f,\"rounds\":[",
                   c ? "," : "", o->sizes[si], o->appenders[ai], s->mb_s, s->disk_mb_s, s->base_mb_s, s->ratio,
                   s->p50_us, s->p99_us, s->max_us, s->fsyncs_s, s->base_fsyncs_s, s->appends_s, s->batch_kib,
                   s->batch_records, s->j_total_us, s->j_write_us, s->j_sync_us, s->j_roll_us, s->j_other_us,
                   s->b_total_us, s->b_write_us, s->b_sync_us, s->p_total_us, s->p_write_us, s->p_sync_us,
                   s->pre_mb_s, s->pre_ratio);
            for (unsigned k = 0; k < o->runs; k++) {
                const bj_jnl_result_t *j = &r[k].j;
                const bj_base_result_t *b = &r[k].b;
                double jm = bj__mb_s(j->payload_bytes, j->secs), bm = bj__mb_s(b->bytes, b->secs);
                printf("%s{\"secs\":%.4f,\"records\":%" PRIu64 ",\"payload_bytes\":%" PRIu64
                       ",\"disk_bytes\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"mb_s\":%.2f,\"p50_us\":%.1f,"
                       "\"p99_us\":%.1f,\"latencies\":%" PRIu64 ",\"pwrites\":%" PRIu64 ",\"pwrite_ns\":%" PRIu64
                       ",\"fdatasyncs\":%" PRIu64 ",\"fdatasync_ns\":%" PRIu64 ",\"rolls\":%" PRIu64
                       ",\"roll_ns\":%" PRIu64 ",\"baseline_secs\":%.4f,\"baseline_bytes\":%" PRIu64
                       ",\"baseline_syncs\":%" PRIu64 ",\"baseline_write_ns\":%" PRIu64
                       ",\"baseline_fdatasync_ns\":%" PRIu64 ",\"baseline_mb_s\":%.2f,\"ratio\":%.4f,"
                       "\"prealloc_secs\":%.4f,\"prealloc_write_ns\":%" PRIu64 ",\"prealloc_fdatasync_ns\":%" PRIu64
                       ",\"prealloc_mb_s\":%.2f}",
                       k ? "," : "", j->secs, j->records, j->payload_bytes, j->disk_bytes, j->batches, jm, j->p50_us,
                       j->p99_us, j->lat_kept, j->writes, j->write_ns, j->syncs, j->sync_ns, j->rolls, j->roll_ns,
                       b->secs, b->bytes, b->syncs, b->write_ns, b->sync_ns, bm, bm > 0 ? jm / bm : 0,
                       r[k].bp.secs, r[k].bp.write_ns, r[k].bp.sync_ns, bj__mb_s(r[k].bp.bytes, r[k].bp.secs));
            }
            printf("]}");
        }
    }
    printf("],\"target\":{\"record_bytes\":%u,\"min_appenders\":%u,\"min_ratio\":%.2f,", BJ_TARGET_RECORD,
           BJ_TARGET_APPENDERS, BJ_TARGET_RATIO);
    if (worst < 0)
        printf("\"worst_ratio\":null,\"met\":null}}\n");
    else
        printf("\"worst_ratio\":%.4f,\"met\":%s}}\n", worst, worst >= BJ_TARGET_RATIO ? "true" : "false");
}

static void bj__print_breakdown(const bj_opts_t *o, const bj_summary_t *sums)
{
    char sz[32];
    unsigned c = 0;

    printf("\nper batch, us (medians). journal: total = pwrite + fdatasync + roll (new segments) + other "
           "(encode, copy, checksum, callbacks).\nbaseline (new file) and prealloc (file preallocated up front): "
           "total = write + fdatasync. prealloc ratio = journal MB/s / prealloc MB/s.\n");
    printf("%-7s %4s | %6s %6s %6s %5s %6s | %6s %6s %6s | %6s %6s %6s %8s %6s\n", "record", "app", "total",
           "pwrite", "fsync", "roll", "other", "total", "write", "fsync", "total", "write", "fsync", "pre MB/s",
           "ratio");
    for (unsigned si = 0; si < o->nsizes; si++) {
        for (unsigned ai = 0; ai < o->nappenders; ai++, c++) {
            const bj_summary_t *s = &sums[c];
            printf("%-7s %4" PRIu64 " | %6.0f %6.0f %6.0f %5.0f %6.0f | %6.0f %6.0f %6.0f | %6.0f %6.0f %6.0f %8.1f "
                   "%6.3f\n",
                   bj_size_str(o->sizes[si], sz, sizeof sz), o->appenders[ai], s->j_total_us, s->j_write_us,
                   s->j_sync_us, s->j_roll_us, s->j_other_us, s->b_total_us, s->b_write_us, s->b_sync_us,
                   s->p_total_us, s->p_write_us, s->p_sync_us, s->pre_mb_s, s->pre_ratio);
        }
    }
}

static void bj__print_table(const bj_opts_t *o, const bj_summary_t *sums)
{
    char sz[32];
    unsigned c = 0;

    printf("%-9s %9s %9s %9s %6s %9s %9s %9s %10s\n", "record", "appenders", "MB/s", "base MB/s", "ratio",
           "p50 us", "p99 us", "fsyncs/s", "batch KiB");
    for (unsigned si = 0; si < o->nsizes; si++) {
        for (unsigned ai = 0; ai < o->nappenders; ai++, c++) {
            const bj_summary_t *s = &sums[c];
            printf("%-9s %9" PRIu64 " %9.1f %9.1f %6.3f %9.0f %9.0f %9.0f %10.1f\n",
                   bj_size_str(o->sizes[si], sz, sizeof sz), o->appenders[ai], s->mb_s, s->base_mb_s, s->ratio,
                   s->p50_us, s->p99_us, s->fsyncs_s, s->batch_kib);
        }
    }
}

int main(int argc, char **argv)
{
    bj_opts_t o;
    char tmpdir[PATH_MAX];
    uint8_t *pool_buf = NULL;
    bj_round_t *rounds = NULL;
    bj_summary_t *sums = NULL;
    int rc = bj__parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    tm_log_set_level(TM_LOG_WARN);
    struct sigaction sa = {.sa_handler = bj__on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    size_t ncells = (size_t)o.nsizes * o.nappenders;
    uint64_t max_size = 0;
    for (unsigned i = 0; i < o.nsizes; i++)
        max_size = o.sizes[i] > max_size ? o.sizes[i] : max_size;
    bj_pool_t pool = {NULL, max_size > BJ_POOL_MIN ? (size_t)max_size : BJ_POOL_MIN};
    pool_buf = tm_malloc(pool.len);
    rounds = tm_calloc(ncells * o.runs, sizeof *rounds);
    sums = tm_calloc(ncells, sizeof *sums);
    if (!pool_buf || !rounds || !sums) {
        fprintf(stderr, "bench_journal: out of memory\n");
        rc = 1;
        goto out_free;
    }
    bj_fill_random(pool_buf, pool.len, tm_random_u64());
    pool.base = pool_buf;

    if (snprintf(tmpdir, sizeof tmpdir, "%s/bench-tmp-XXXXXX", o.dir) >= (int)sizeof tmpdir ||
        !mkdtemp(tmpdir)) {
        fprintf(stderr, "bench_journal: cannot make a scratch folder in %s: %s\n", o.dir, strerror(errno));
        rc = 1;
        goto out_free;
    }
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(stderr, "bench_journal: scratch %s, %u round(s) per cell, each <= %.2f s or %" PRIu64
                    " payload bytes, nproc %ld\n",
            tmpdir, o.runs, o.seconds, o.bytes, nproc);

    for (unsigned k = 0; k < o.runs && rc == 0; k++) {
        for (size_t c = 0; c < ncells && rc == 0; c++) {
            bj_cfg_t cfg = {
                .record = (size_t)o.sizes[c / o.nappenders],
                .appenders = (unsigned)o.appenders[c % o.nappenders],
                .seconds = o.seconds,
                .budget = o.bytes,
                .submit_thread = o.submit_thread,
            };
            /* Let every appender have a couple of appends however small the budget. */
            uint64_t least = 2 * (uint64_t)cfg.appenders * cfg.record;
            if (cfg.budget < least)
                cfg.budget = least;
            bj_round_t *r = &rounds[c * o.runs + k];
            /* Warm as much as the journal will write: the budget at first,
             * then a little over the most an earlier round of the cell wrote. */
            uint64_t warm = cfg.budget + cfg.budget / 16;
            if (k > 0) {
                uint64_t most = 0;
                for (unsigned e = 0; e < k; e++)
                    if (rounds[c * o.runs + e].j.disk_bytes > most)
                        most = rounds[c * o.runs + e].j.disk_bytes;
                warm = most + most / 4;
            }
            rc = bj__round(tmpdir, &cfg, k, &pool, o.prewarm ? warm : 0, r);
            if (rc != 0)
                break;
            if (bj_interrupted) {
                rc = -EINTR;
                break;
            }
            double jm = bj__mb_s(r->j.payload_bytes, r->j.secs), bm = bj__mb_s(r->b.bytes, r->b.secs);
            fprintf(stderr,
                    "  round %u/%u  %8zu B x %3u: journal %8.1f MB/s (%.2f s, %" PRIu64 " batches), "
                    "baseline %8.1f MB/s, ratio %.3f\n",
                    k + 1, o.runs, cfg.record, cfg.appenders, jm, r->j.secs, r->j.batches, bm,
                    bm > 0 ? jm / bm : 0);
        }
    }
    int rm = bj_rmtree(tmpdir);
    if (rc != 0) {
        fprintf(stderr, "bench_journal: stopped: %s\n", rc == -EINTR ? "interrupted" : "a round failed");
        rc = 1;
        goto out_free;
    }
    if (rm != 0)
        fprintf(stderr, "bench_journal: could not remove %s\n", tmpdir);

    for (size_t c = 0; c < ncells; c++)
        bj__summarise(&rounds[c * o.runs], o.runs, &sums[c]);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fflush(stderr);
    printf("journal group commit vs write+fdatasync of the same batches; medians of %u round(s); "
           "ratio = median of per-round ratios\n",
           o.runs);
    bj__print_table(&o, sums);
    bj__print_breakdown(&o, sums);
    printf("peak RSS %ld KiB, nproc %ld\n", ru.ru_maxrss, nproc);
    bj__print_json(&o, rounds, sums, nproc, ru.ru_maxrss);

out_free:
    tm_free(sums);
    tm_free(rounds);
    tm_free(pool_buf);
    return rc;
}
