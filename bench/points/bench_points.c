/*
 * bench_points: the points stage and the rebuild reader against their
 * baselines, measured in the same run (issue 4, performance.md).
 *
 *   1. Processing rate. --mib MiB of 4 KiB writes, and separately of 64 KiB
 *      writes, at random offsets of a --proc-disk disk, data about half
 *      compressible, in batches of at most --batch-records writes and
 *      --batch-data bytes: appended into a fresh journal the way ingest
 *      appends agents' frames (--inflight outstanding, each waited durable):
 *      that append rate is the ingest baseline. Then pts_open on the journal
 *      and pts_sync until every write is indexed: extents/s, MB/s, and the
 *      ratio processing / ingest (target: at least 1).
 *   2. `latest` with a backlog: a machine the index knows, --latest-mib MiB
 *      of 64 KiB writes appended while no processor runs, then pts_open and
 *      pts_cut_latest timed (target: under 2 s for 1 GiB).
 *   3. Rebuild: a --size disk with --changed percent written (bp_rebuild.c),
 *      rebuilt as a sparse raw image by tgt_write_image, by
 *      `cp --sparse=always` of a raw image holding the same writes, and by
 *      `qemu-img convert -O raw` of a qcow2 chain (a base and 10 overlays)
 *      holding them; the rebuilt image is compared with the raw one byte
 *      for byte (the run fails if they differ). Targets: time_cp /
 *      time_rebuild at least 0.8, and faster than the qcow2 chain.
 *
 * --runs repeats each timed part; figures are medians over the rounds, a
 * ratio the median of the per-round ratios. The rebuild's sources are made
 * once. Output: a table on stdout, then one JSON object on the last line.
 * MB = 10^6 bytes, KiB/MiB/GiB = 2^10/2^20/2^30 bytes.
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
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "bench/points/bp.h"
#include "wire/wire.h"

#ifndef BP_DEFAULT_DIR
#define BP_DEFAULT_DIR "."
#endif

#define BP_MAX_RUNS 20
#define BP_NCELLS 2
#define BP_POOL_LEN (16u << 20)
#define BP_MARGIN (512ull << 20)

/* The targets. */
#define BP_TARGET_PROC_RATIO 1.0
#define BP_TARGET_LATEST_S 2.0
#define BP_TARGET_LATEST_BYTES (1ull << 30)
#define BP_TARGET_VS_CP 0.8
#define BP_TARGET_VS_QEMU 1.0

static const uint32_t bp_cell_wsize[BP_NCELLS] = {4096, 65536};

typedef struct bp_opts {
    uint64_t mib, latest_mib, size, proc_disk, batch_data, batch_records, seed;
    double changed;
    unsigned runs, inflight;
    const char *dir;
    bool do_proc, do_latest, do_rebuild;
    bool drop_caches, prewarm, quick;
} bp_opts_t;

volatile sig_atomic_t bj_interrupted;

static void bp__on_signal(int sig)
{
    (void)sig;
    bj_interrupted = 1;
}

static void bp__usage(FILE *f)
{
    fprintf(f,
            "usage: bench_points [options]\n"
            "  --mib N            MiB of writes per processing cell, 4 KiB and 64 KiB (default 1024)\n"
            "  --latest-mib N     MiB of 64 KiB writes in the `latest` backlog (default 1024)\n"
            "  --size S           the rebuilt disk (default 4G; K/M/G suffixes)\n"
            "  --changed P        percent of it written, in 64 KiB slots (default 10)\n"
            "  --runs R           rounds of each timed part (default 1; medians)\n"
            "  --parts LIST       of proc,latest,rebuild (default all)\n"
            "  --dir D            make the scratch folder bench-points-XXXXXX inside D\n"
            "                     (default $TMPDIR, else the benchmark's build folder)\n"
            "  --inflight N       appends outstanding while feeding a journal (default 16)\n"
            "  --batch-records N  writes per batch at most (default 64)\n"
            "  --batch-data B     data per batch at most (default 1M)\n"
            "  --proc-disk S      the disk the processing writes land on (default 64G)\n"
            "  --seed N           workload seed (default random; printed)\n"
            "  --no-drop-caches   keep the page cache before each rebuild (default: drop it when root)\n"
            "  --no-prewarm       do not warm the page cache before timed runs (bench/journal/bj_prewarm.c)\n"
            "  --quick            small sizes, for smoke testing\n"
            "  --help\n"
            "Prints a table, then one JSON object on the last line. MB = 10^6 bytes.\n");
}

enum { BP_O_MIB = 256, BP_O_LATEST, BP_O_SIZE, BP_O_CHANGED, BP_O_RUNS, BP_O_PARTS, BP_O_DIR, BP_O_INFLIGHT,
       BP_O_BREC, BP_O_BDATA, BP_O_PDISK, BP_O_SEED, BP_O_NODROP, BP_O_NOWARM };


static bool bp__parse_parts(const char *arg, bp_opts_t *o)
{
    char buf[128];
    if (strlen(arg) >= sizeof buf)
        return false;
    strcpy(buf, arg);
    o->do_proc = o->do_latest = o->do_rebuild = false;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "proc") == 0)
            o->do_proc = true;
        else if (strcmp(t, "latest") == 0)
            o->do_latest = true;
        else if (strcmp(t, "rebuild") == 0)
            o->do_rebuild = true;
        else
            return false;
    }
    return o->do_proc || o->do_latest || o->do_rebuild;
}

/* 0, 1 for --help, or -1 after printing what was wrong. */
static int bp__parse_opts(int argc, char **argv, bp_opts_t *o)
{
    static const struct option longopts[] = {
        {"mib", required_argument, NULL, BP_O_MIB},
        {"latest-mib", required_argument, NULL, BP_O_LATEST},
        {"size", required_argument, NULL, BP_O_SIZE},
        {"changed", required_argument, NULL, BP_O_CHANGED},
        {"runs", required_argument, NULL, BP_O_RUNS},
        {"parts", required_argument, NULL, BP_O_PARTS},
        {"dir", required_argument, NULL, BP_O_DIR},
        {"inflight", required_argument, NULL, BP_O_INFLIGHT},
        {"batch-records", required_argument, NULL, BP_O_BREC},
        {"batch-data", required_argument, NULL, BP_O_BDATA},
        {"proc-disk", required_argument, NULL, BP_O_PDISK},
        {"seed", required_argument, NULL, BP_O_SEED},
        {"no-drop-caches", no_argument, NULL, BP_O_NODROP},
        {"no-prewarm", no_argument, NULL, BP_O_NOWARM},
        {"quick", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool set_mib = false, set_latest = false, set_size = false, set_seed = false;
    uint64_t v;
    char *end;
    int c;

    memset(o, 0, sizeof *o);
    o->changed = 10;
    o->runs = 1;
    o->inflight = 16;
    o->batch_records = 64;
    o->batch_data = 1u << 20;
    o->proc_disk = 64ull << 30;
    o->do_proc = o->do_latest = o->do_rebuild = true;
    o->drop_caches = o->prewarm = true;
    const char *tmp = getenv("TMPDIR");
    o->dir = tmp && *tmp ? tmp : BP_DEFAULT_DIR;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case BP_O_MIB:
            if (!bj_parse_uint(optarg, 1, 1u << 20, &o->mib))
                goto bad;
            set_mib = true;
            break;
        case BP_O_LATEST:
            if (!bj_parse_uint(optarg, 1, 1u << 20, &o->latest_mib))
                goto bad;
            set_latest = true;
            break;
        case BP_O_SIZE:
            if (!bj_parse_size(optarg, &o->size))
                goto bad;
            set_size = true;
            break;
        case BP_O_CHANGED:
            errno = 0;
            o->changed = strtod(optarg, &end);
            if (errno || *end || !(o->changed > 0 && o->changed <= 100))
                goto bad;
            break;
        case BP_O_RUNS:
            if (!bj_parse_uint(optarg, 1, BP_MAX_RUNS, &v))
                goto bad;
            o->runs = (unsigned)v;
            break;
        case BP_O_PARTS:
            if (!bp__parse_parts(optarg, o))
                goto bad;
            break;
        case BP_O_DIR:
            o->dir = optarg;
            break;
        case BP_O_INFLIGHT:
            if (!bj_parse_uint(optarg, 1, 4096, &v))
                goto bad;
            o->inflight = (unsigned)v;
            break;
        case BP_O_BREC:
            if (!bj_parse_uint(optarg, 1, WIRE_MAX_BATCH_RECORDS, &o->batch_records))
                goto bad;
            break;
        case BP_O_BDATA:
            if (!bj_parse_size(optarg, &o->batch_data) || o->batch_data > WIRE_MAX_BATCH_DATA)
                goto bad;
            break;
        case BP_O_PDISK:
            if (!bj_parse_size(optarg, &o->proc_disk) || o->proc_disk < (1u << 20))
                goto bad;
            break;
        case BP_O_SEED:
            if (!bj_parse_uint(optarg, 0, UINT64_MAX, &o->seed))
                goto bad;
            set_seed = true;
            break;
        case BP_O_NODROP:
            o->drop_caches = false;
            break;
        case BP_O_NOWARM:
            o->prewarm = false;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'h':
            bp__usage(stdout);
            return 1;
        default:
            bp__usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench_points: unexpected argument '%s'\n", argv[optind]);
        bp__usage(stderr);
        return -1;
    }
    if (!set_mib)
        o->mib = o->quick ? 32 : 1024;
    if (!set_latest)
        o->latest_mib = o->quick ? 32 : 1024;
    if (!set_size)
        o->size = o->quick ? (256u << 20) : (4ull << 30);
    if (!set_seed)
        o->seed = tm_random_u64();
    return 0;

bad:
    fprintf(stderr, "bench_points: bad value '%s' for --%s\n", optarg, longopts[c - BP_O_MIB].name);
    return -1;
}

/* Writes per batch for writes of wsize: the record and data limits. */
static unsigned bp__per_batch(const bp_opts_t *o, uint32_t wsize)
{
    uint64_t n = o->batch_data / wsize;
    if (n > o->batch_records)
        n = o->batch_records;
    return n ? (unsigned)n : 1;
}

static double bp__mb_s(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / 1e6 / secs : 0;
}

/* Bytes the scratch folder must have free for the parts asked. */
static uint64_t bp__space_needed(const bp_opts_t *o)
{
    uint64_t need = 0, mib = 1u << 20;
    if (o->do_proc && o->mib * mib * 2 > need)
        need = o->mib * mib * 2; /* the journal (about half) and its pre-warm */
    if (o->do_latest && o->latest_mib * mib * 2 > need)
        need = o->latest_mib * mib * 2;
    if (o->do_rebuild) {
        /* journal, raw reference, tenths, chain, cp's and qemu's outputs: the
         * changed bytes each; tidemark's output and the pre-warm: up to the
         * whole disk each */
        uint64_t changed = (uint64_t)((double)o->size * o->changed / 100.0);
        uint64_t r = 6 * changed + 2 * o->size;
        if (r > need)
            need = r;
    }
    return need + BP_MARGIN;
}

typedef struct bp_all {
    bp_proc_result_t proc[BP_NCELLS][BP_MAX_RUNS];
    bp_latest_result_t latest[BP_MAX_RUNS];
    bp_rebuild_setup_t setup;
    bp_rebuild_result_t rb[BP_MAX_RUNS];
} bp_all_t;

/* Per-round figures, each a vector over the rounds; reported as medians. */
typedef double bp_vec_t[BP_MAX_RUNS];

typedef struct bp_cell_fig {
    bp_vec_t ingest_mb_s, ingest_wr_s, ingest_fsyncs_s, proc_mb_s, extents_s, ratio, proc_s, proc_cpu_s, proc_cpu_pct;
} bp_cell_fig_t;

typedef struct bp_latest_fig {
    bp_vec_t open_s, latest_s, ingest_mb_s;
} bp_latest_fig_t;

typedef struct bp_rb_fig {
    bp_vec_t tm_s, tm_ns_s, cp_s, cp_ns_s, q_s, q_ns_s;
    bp_vec_t tm_mb, tm_ns_mb, cp_mb, cp_ns_mb, q_mb, q_ns_mb;
    bp_vec_t tm_alloc, cp_alloc, q_alloc;
    bp_vec_t fine_s, fine_ns_s, fine_mb, fine_ns_mb, fine_alloc, fine_vs_cp;
    bp_vec_t vs_cp, vs_cp_ns, vs_q, vs_q_ns, tm_cpu_s, tm_cpu_pct;
} bp_rb_fig_t;

typedef struct bp_figs {
    bp_cell_fig_t cell[BP_NCELLS];
    bp_latest_fig_t latest;
    bp_rb_fig_t rb;
} bp_figs_t;

static double bp__div(double a, double b)
{
    return b > 0 ? a / b : 0;
}

static void bp__figures(const bp_opts_t *o, const bp_all_t *a, bp_figs_t *f)
{
    for (unsigned i = 0; i < o->runs; i++) {
        for (unsigned c = 0; c < BP_NCELLS; c++) {
            const bp_proc_result_t *r = &a->proc[c][i];
            bp_cell_fig_t *g = &f->cell[c];
            g->ingest_mb_s[i] = bp__mb_s(r->feed.raw_bytes, r->feed.secs);
            g->ingest_wr_s[i] = bp__div((double)r->feed.writes, r->feed.secs);
            g->ingest_fsyncs_s[i] = bp__div((double)r->feed.fsyncs, r->feed.secs);
            g->proc_mb_s[i] = bp__mb_s(r->feed.raw_bytes, r->proc_s);
            g->extents_s[i] = bp__div((double)r->extents, r->proc_s);
            /* the same bytes both sides: the ratio of the rates is that of the times */
            g->ratio[i] = bp__div(r->feed.secs, r->proc_s);
            g->proc_s[i] = r->proc_s;
            g->proc_cpu_s[i] = r->proc_cpu_s;
            g->proc_cpu_pct[i] = 100 * bp__div(r->proc_cpu_s, r->proc_s);
        }
        const bp_latest_result_t *l = &a->latest[i];
        f->latest.open_s[i] = l->open_s;
        f->latest.latest_s[i] = l->latest_s;
        f->latest.ingest_mb_s[i] = bp__mb_s(l->feed.raw_bytes, l->feed.secs);
        const bp_rebuild_result_t *r = &a->rb[i];
        bp_rb_fig_t *g = &f->rb;
        g->tm_s[i] = r->tm_sync_s;
        g->tm_ns_s[i] = r->tm_nosync_s;
        g->cp_s[i] = r->cp_sync_s;
        g->cp_ns_s[i] = r->cp_nosync_s;
        g->q_s[i] = r->q_sync_s;
        g->q_ns_s[i] = r->q_nosync_s;
        g->tm_mb[i] = bp__mb_s(o->size, r->tm_sync_s);
        g->tm_ns_mb[i] = bp__mb_s(o->size, r->tm_nosync_s);
        g->cp_mb[i] = bp__mb_s(o->size, r->cp_sync_s);
        g->cp_ns_mb[i] = bp__mb_s(o->size, r->cp_nosync_s);
        g->q_mb[i] = bp__mb_s(o->size, r->q_sync_s);
        g->q_ns_mb[i] = bp__mb_s(o->size, r->q_nosync_s);
        g->tm_alloc[i] = (double)r->tm_alloc;
        g->cp_alloc[i] = (double)r->cp_alloc;
        g->q_alloc[i] = (double)r->q_alloc;
        g->vs_cp[i] = bp__div(r->cp_sync_s, r->tm_sync_s);
        g->vs_cp_ns[i] = bp__div(r->cp_nosync_s, r->tm_nosync_s);
        g->vs_q[i] = bp__div(r->q_sync_s, r->tm_sync_s);
        g->vs_q_ns[i] = bp__div(r->q_nosync_s, r->tm_nosync_s);
        g->tm_cpu_s[i] = r->tm_cpu_s;
        g->tm_cpu_pct[i] = 100 * bp__div(r->tm_cpu_s, r->tm_sync_s);
        g->fine_s[i] = r->fine_sync_s;
        g->fine_ns_s[i] = r->fine_nosync_s;
        g->fine_mb[i] = bp__mb_s(o->size, r->fine_sync_s);
        g->fine_ns_mb[i] = bp__mb_s(o->size, r->fine_nosync_s);
        g->fine_alloc[i] = (double)r->fine_alloc;
        g->fine_vs_cp[i] = bp__div(r->cp_sync_s, r->fine_sync_s);
    }
}

/* The median of v[0..n) (v is left as it was). */
static double bp__med(const double *v, unsigned n)
{
    double t[BP_MAX_RUNS];
    memcpy(t, v, n * sizeof *t);
    return bj_median(t, n);
}

static const char *bp__yes(bool b)
{
    return b ? "true" : "false";
}

static void bp__print_json(const bp_opts_t *o, const bp_all_t *a, const bp_figs_t *f, long rss, const char *caches)
{
    unsigned n = o->runs;
#define M(v) bp__med((v), n)
    printf("{\"bench\":\"points\",\"unit_mb\":1000000,\"runs\":%u,\"nproc\":%ld,\"peak_rss_kib\":%ld,"
           "\"seed\":%" PRIu64 ",\"prewarm\":%s,\"inflight\":%u",
           n, sysconf(_SC_NPROCESSORS_ONLN), rss, o->seed, bp__yes(o->prewarm), o->inflight);
    if (o->do_proc) {
        printf(",\"processing\":{\"mib\":%" PRIu64 ",\"disk_bytes\":%" PRIu64 ",\"target_ratio\":%.1f,\"cells\":[",
               o->mib, o->proc_disk, BP_TARGET_PROC_RATIO);
        for (unsigned c = 0; c < BP_NCELLS; c++) {
            const bp_cell_fig_t *g = &f->cell[c];
            const bp_proc_result_t *r = a->proc[c];
            printf("%s{\"write_bytes\":%u,\"batch_writes\":%u,\"writes\":%" PRIu64 ",\"jnl_bytes\":%" PRIu64 ","
                   "\"ingest_mb_s\":%.2f,\"ingest_writes_s\":%.0f,\"ingest_fsyncs_s\":%.1f,\"proc_mb_s\":%.2f,"
                   "\"extents_s\":%.0f,\"proc_s\":%.3f,\"proc_cpu_s\":%.3f,\"ratio\":%.4f,\"meets_target\":%s,"
                   "\"rounds\":[",
                   c ? "," : "", bp_cell_wsize[c], bp__per_batch(o, bp_cell_wsize[c]), r[0].feed.writes,
                   r[0].feed.jnl_bytes, M(g->ingest_mb_s), M(g->ingest_wr_s), M(g->ingest_fsyncs_s),
                   M(g->proc_mb_s), M(g->extents_s), M(g->proc_s), M(g->proc_cpu_s), M(g->ratio),
                   bp__yes(M(g->ratio) >= BP_TARGET_PROC_RATIO));
            for (unsigned i = 0; i < n; i++)
                printf("%s{\"ingest_s\":%.3f,\"proc_s\":%.3f,\"ratio\":%.4f}", i ? "," : "", r[i].feed.secs,
                       r[i].proc_s, g->ratio[i]);
            printf("]}");
        }
        printf("]}");
    }
    if (o->do_latest) {
        const bp_latest_fig_t *g = &f->latest;
        const bp_latest_result_t *r = a->latest;
        /* The target is for 1 GiB; a smaller backlog says nothing about it. */
        bool judged = (o->latest_mib << 20) >= BP_TARGET_LATEST_BYTES;
        printf(",\"latest\":{\"backlog_bytes\":%" PRIu64 ",\"backlog_jnl_bytes\":%" PRIu64 ",\"write_bytes\":65536,"
               "\"ingest_mb_s\":%.2f,\"open_s\":%.4f,\"latest_s\":%.4f,\"target_s\":%.1f,\"meets_target\":%s,"
               "\"rounds\":[",
               r[0].feed.raw_bytes, r[0].feed.jnl_bytes, M(g->ingest_mb_s), M(g->open_s), M(g->latest_s),
               BP_TARGET_LATEST_S, judged ? bp__yes(M(g->latest_s) < BP_TARGET_LATEST_S) : "null");
        for (unsigned i = 0; i < n; i++)
            printf("%s{\"open_s\":%.4f,\"latest_s\":%.4f}", i ? "," : "", r[i].open_s, r[i].latest_s);
        printf("]}");
    }
    if (o->do_rebuild) {
        const bp_rb_fig_t *g = &f->rb;
        const bp_rebuild_setup_t *su = &a->setup;
        printf(",\"rebuild\":{\"disk_bytes\":%" PRIu64 ",\"changed_pct\":%.2f,\"writes\":%" PRIu64
               ",\"changed_bytes\":%" PRIu64 ",\"page_cache\":\"%s\",\"layers\":11,\"verified\":true,"
               "\"chain_verified\":true,\"setup\":{\"sources_s\":%.2f,\"process_s\":%.3f,\"jnl_bytes\":%" PRIu64
               ",\"chain_s\":%.2f,\"chain_bytes\":%" PRIu64 "},",
               o->size, o->changed, su->writes, su->changed_bytes, caches, su->sources_s, su->process_s,
               su->jnl_bytes, su->chain_s, su->chain_bytes);
        printf("\"tidemark\":{\"sync_s\":%.3f,\"nosync_s\":%.3f,\"mb_s\":%.1f,\"mb_s_nosync\":%.1f,\"cpu_s\":%.3f,"
               "\"alloc_bytes\":%.0f},",
               M(g->tm_s), M(g->tm_ns_s), M(g->tm_mb), M(g->tm_ns_mb), M(g->tm_cpu_s), M(g->tm_alloc));
        printf("\"reader_fine_holes\":{\"sync_s\":%.3f,\"nosync_s\":%.3f,\"mb_s\":%.1f,\"mb_s_nosync\":%.1f,"
               "\"alloc_bytes\":%.0f,\"vs_cp\":%.4f},",
               M(g->fine_s), M(g->fine_ns_s), M(g->fine_mb), M(g->fine_ns_mb), M(g->fine_alloc), M(g->fine_vs_cp));
        printf("\"cp\":{\"sync_s\":%.3f,\"nosync_s\":%.3f,\"mb_s\":%.1f,\"mb_s_nosync\":%.1f,\"alloc_bytes\":%.0f},",
               M(g->cp_s), M(g->cp_ns_s), M(g->cp_mb), M(g->cp_ns_mb), M(g->cp_alloc));
        printf("\"qemu_chain\":{\"sync_s\":%.3f,\"nosync_s\":%.3f,\"mb_s\":%.1f,\"mb_s_nosync\":%.1f,"
               "\"alloc_bytes\":%.0f},",
               M(g->q_s), M(g->q_ns_s), M(g->q_mb), M(g->q_ns_mb), M(g->q_alloc));
        printf("\"vs_cp\":%.4f,\"vs_cp_nosync\":%.4f,\"vs_qemu\":%.4f,\"vs_qemu_nosync\":%.4f,"
               "\"target_vs_cp\":%.1f,\"target_vs_qemu\":%.1f,\"meets_cp_target\":%s,\"meets_qemu_target\":%s,"
               "\"rounds\":[",
               M(g->vs_cp), M(g->vs_cp_ns), M(g->vs_q), M(g->vs_q_ns), BP_TARGET_VS_CP, BP_TARGET_VS_QEMU,
               bp__yes(M(g->vs_cp) >= BP_TARGET_VS_CP), bp__yes(M(g->vs_q) > BP_TARGET_VS_QEMU));
        for (unsigned i = 0; i < n; i++)
            printf("%s{\"tidemark_s\":%.3f,\"cp_s\":%.3f,\"qemu_s\":%.3f,\"tidemark_nosync_s\":%.3f,"
                   "\"cp_nosync_s\":%.3f,\"qemu_nosync_s\":%.3f}",
                   i ? "," : "", g->tm_s[i], g->cp_s[i], g->q_s[i], g->tm_ns_s[i], g->cp_ns_s[i], g->q_ns_s[i]);
        printf("]}");
    }
    printf("}\n");
#undef M
}

static void bp__print(const bp_opts_t *o, const bp_all_t *a, long rss, const char *caches)
{
    unsigned n = o->runs;
    char sz[32];
    bp_figs_t *f = tm_calloc(1, sizeof *f);
    if (!f) {
        fprintf(stderr, "bench_points: out of memory\n");
        return;
    }
    bp__figures(o, a, f);
#define M(v) bp__med((v), n)
    printf("bench_points: medians of %u round(s); MB = 10^6 bytes; seed %" PRIu64 "\n", n, o->seed);
    if (o->do_proc) {
        printf("\nprocessing (%" PRIu64 " MiB per cell, random offsets on a %s disk, data ~50%% compressible)\n",
               o->mib, bj_size_str(o->proc_disk, sz, sizeof sz));
        printf("%-8s %6s %12s %12s %12s %12s %8s %8s %9s\n", "write", "batch", "ingest MB/s", "proc MB/s",
               "ingest wr/s", "extents/s", "ratio", "proc s", "proc CPU");
        for (unsigned c = 0; c < BP_NCELLS; c++) {
            const bp_cell_fig_t *g = &f->cell[c];
            printf("%-8s %6u %12.1f %12.1f %12.0f %12.0f %8.3f %8.2f %8.0f%%\n",
                   bj_size_str(bp_cell_wsize[c], sz, sizeof sz), bp__per_batch(o, bp_cell_wsize[c]),
                   M(g->ingest_mb_s), M(g->proc_mb_s), M(g->ingest_wr_s), M(g->extents_s), M(g->ratio),
                   M(g->proc_s), M(g->proc_cpu_pct));
        }
        printf("ratio = processing rate / ingest rate (target >= %.1f); proc CPU = this process's CPU time while\n"
               "processing over its wall time (100%% = one core)\n",
               BP_TARGET_PROC_RATIO);
    }
    if (o->do_latest) {
        const bp_latest_fig_t *g = &f->latest;
        printf("\nlatest with %" PRIu64 " MiB of 64 KiB writes received, not processed: pts_open %.3f s, "
               "pts_cut_latest %.3f s (target < %.1f s for 1 GiB); the backlog was appended at %.1f MB/s\n",
               o->latest_mib, M(g->open_s), M(g->latest_s), BP_TARGET_LATEST_S, M(g->ingest_mb_s));
    }
    if (o->do_rebuild) {
        const bp_rb_fig_t *g = &f->rb;
        const bp_rebuild_setup_t *su = &a->setup;
        printf("\nrebuild of a %s disk, %.1f%% changed (%" PRIu64 " x 64 KiB random writes); page cache %s\n",
               bj_size_str(o->size, sz, sizeof sz), o->changed, su->writes, caches);
        printf("%-24s %9s %10s %12s %13s %12s\n", "", "synced s", "no sync s", "MB/s synced", "MB/s no sync",
               "on disk MiB");
        printf("%-24s %9.3f %10.3f %12.1f %13.1f %12.1f\n", "tidemark (reader)", M(g->tm_s), M(g->tm_ns_s),
               M(g->tm_mb), M(g->tm_ns_mb), M(g->tm_alloc) / 1048576);
        printf("%-24s %9.3f %10.3f %12.1f %13.1f %12.1f\n", "  reader, 4 KiB holes *", M(g->fine_s),
               M(g->fine_ns_s), M(g->fine_mb), M(g->fine_ns_mb), M(g->fine_alloc) / 1048576);
        printf("%-24s %9.3f %10.3f %12.1f %13.1f %12.1f\n", "cp --sparse=always", M(g->cp_s), M(g->cp_ns_s),
               M(g->cp_mb), M(g->cp_ns_mb), M(g->cp_alloc) / 1048576);
        printf("%-24s %9.3f %10.3f %12.1f %13.1f %12.1f\n", "qemu-img, base+10 qcow2", M(g->q_s), M(g->q_ns_s),
               M(g->q_mb), M(g->q_ns_mb), M(g->q_alloc) / 1048576);
        printf("time_cp / time_tidemark: %.3f synced, %.3f no sync (target >= %.1f)\n", M(g->vs_cp),
               M(g->vs_cp_ns), BP_TARGET_VS_CP);
        printf("time_qemu / time_tidemark: %.3f synced, %.3f no sync (target > %.1f)\n", M(g->vs_q), M(g->vs_q_ns),
               BP_TARGET_VS_QEMU);
        printf("* the same reader with the benchmark's own single-threaded writer, skipping zero 4 KiB\n"
               "  blocks as cp does; no target: time_cp / its time %.3f\n",
               M(g->fine_vs_cp));
        printf("tidemark's CPU while rebuilding: %.0f%% of one core; its output equals the raw image (and "
               "qemu-img's did in round 1)\n",
               M(g->tm_cpu_pct));
        printf("setup (untimed): sources %.1f s (processing them %.2f s), qcow2 chain %.1f s (%.1f MiB)\n",
               su->sources_s, su->process_s, su->chain_s, (double)su->chain_bytes / 1048576);
    }
#undef M
    printf("\npeak RSS %ld KiB\n", rss);
    bp__print_json(o, a, f, rss, caches);
    tm_free(f);
}

static int bp__run_all(const bp_opts_t *o, const char *tmpdir, const bj_pool_t *pool, bp_all_t *a,
                       const char **caches)
{
    const bj_pool_t *warm = o->prewarm ? pool : NULL;
    int rc = 0;
    char name[64];

    if (o->do_proc) {
        for (unsigned k = 0; k < o->runs && rc == 0; k++) {
            for (unsigned c = 0; c < BP_NCELLS && rc == 0; c++) {
                bp_pool_cfg_t pc = {
                    .wsize = bp_cell_wsize[c],
                    .per_batch = bp__per_batch(o, bp_cell_wsize[c]),
                    .disk_size = o->proc_disk,
                    .total = o->mib << 20,
                    .seed = o->seed + c,
                };
                snprintf(name, sizeof name, "proc-%u-%u", pc.wsize, k);
                rc = bp_proc_run(tmpdir, name, &pc, o->inflight, warm, &a->proc[c][k]);
                const bp_proc_result_t *r = &a->proc[c][k];
                if (rc == 0)
                    fprintf(stderr,
                            "  round %u/%u  %5u B writes: ingest %7.1f MB/s (%.2f s), processing %7.1f MB/s "
                            "(%.2f s, %.0f extents/s), ratio %.3f\n",
                            k + 1, o->runs, pc.wsize, bp__mb_s(r->feed.raw_bytes, r->feed.secs), r->feed.secs,
                            bp__mb_s(r->feed.raw_bytes, r->proc_s), r->proc_s,
                            r->proc_s > 0 ? (double)r->extents / r->proc_s : 0,
                            r->proc_s > 0 ? r->feed.secs / r->proc_s : 0);
            }
        }
    }
    if (o->do_latest) {
        for (unsigned k = 0; k < o->runs && rc == 0; k++) {
            bp_pool_cfg_t pc = {
                .wsize = 65536,
                .per_batch = bp__per_batch(o, 65536),
                .disk_size = o->proc_disk,
                .total = o->latest_mib << 20,
                .seed = o->seed + 7,
            };
            snprintf(name, sizeof name, "latest-%u", k);
            rc = bp_latest_run(tmpdir, name, &pc, o->inflight, warm, &a->latest[k]);
            if (rc == 0)
                fprintf(stderr, "  round %u/%u  latest over %" PRIu64 " MiB: open %.3f s, cut_latest %.3f s\n",
                        k + 1, o->runs, o->latest_mib, a->latest[k].open_s, a->latest[k].latest_s);
        }
    }
    if (o->do_rebuild && rc == 0) {
        bp_rebuild_t *rb = NULL;
        bp_rebuild_cfg_t rc_cfg = {
            .dir = tmpdir,
            .size = o->size,
            .changed_pct = o->changed,
            .seed = o->seed,
            .inflight = o->inflight,
            .drop_caches = o->drop_caches,
        };
        fprintf(stderr, "  rebuild: preparing the journal, the raw image and the qcow2 chain...\n");
        rc = bp_rebuild_prepare(&rc_cfg, &rb, &a->setup);
        if (rc == 0 && o->drop_caches && !a->setup.caches_dropped)
            fprintf(stderr, "  rebuild: cannot drop the page cache (not root?): every source is warm\n");
        *caches = a->setup.caches_dropped ? "dropped before each rebuild" : "warm (not dropped)";
        for (unsigned k = 0; k < o->runs && rc == 0 && !bj_interrupted; k++) {
            rc = bp_rebuild_round(rb, k, a->setup.caches_dropped, warm, &a->rb[k]);
            const bp_rebuild_result_t *r = &a->rb[k];
            if (rc == 0)
                fprintf(stderr,
                        "  round %u/%u  rebuild: tidemark %.2f s, cp %.2f s, qemu-img %.2f s (synced); "
                        "cp/tidemark %.3f, qemu/tidemark %.3f\n",
                        k + 1, o->runs, r->tm_sync_s, r->cp_sync_s, r->q_sync_s, r->cp_sync_s / r->tm_sync_s,
                        r->q_sync_s / r->tm_sync_s);
        }
        bp_rebuild_free(rb);
    }
    if (rc == 0 && bj_interrupted)
        rc = -EINTR;
    return rc;
}

int main(int argc, char **argv)
{
    bp_opts_t o;
    int rc = bp__parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bp__on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tm_log_set_level(TM_LOG_WARN);

    char tmpdir[PATH_MAX];
    if (snprintf(tmpdir, sizeof tmpdir, "%s/bench-points-XXXXXX", o.dir) >= (int)sizeof tmpdir) {
        fprintf(stderr, "bench_points: --dir is too long\n");
        return 2;
    }
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "bench_points: cannot make a folder in %s: %s\n", o.dir, strerror(errno));
        return 1;
    }
    uint64_t need = bp__space_needed(&o), have = bj_free_bytes(tmpdir);
    if (have < need) {
        fprintf(stderr,
                "bench_points: not enough free space in %s: these sizes need about %.1f GiB, there are %.1f GiB "
                "(pick another --dir, or smaller --size/--mib/--latest-mib)\n",
                o.dir, (double)need / (1u << 30), (double)have / (1u << 30));
        rmdir(tmpdir);
        return 1;
    }
    if (bj_on_tmpfs(tmpdir))
        fprintf(stderr, "bench_points: warning: %s is a tmpfs: the figures say nothing about a disk\n", o.dir);
    fprintf(stderr, "bench_points: scratch %s (%.1f GiB free, about %.1f GiB needed), seed %" PRIu64 "\n", tmpdir,
            (double)have / (1u << 30), (double)need / (1u << 30), o.seed);

    uint8_t *pool_buf = tm_malloc(BP_POOL_LEN);
    bp_all_t *all = tm_calloc(1, sizeof *all);
    if (!pool_buf || !all) {
        fprintf(stderr, "bench_points: out of memory\n");
        rmdir(tmpdir);
        tm_free(pool_buf);
        tm_free(all);
        return 1;
    }
    bj_fill_random(pool_buf, BP_POOL_LEN, o.seed);
    bj_pool_t pool = {pool_buf, BP_POOL_LEN};
    const char *caches = "";

    rc = bp__run_all(&o, tmpdir, &pool, all, &caches);
    if (rc == TM_ECORRUPT) {
        fprintf(stderr, "bench_points: FAILED: a check above failed; what is left of %s is kept\n", tmpdir);
        rc = 1;
        goto out;
    }
    int rm = bj_rmtree(tmpdir);
    if (rm != 0)
        fprintf(stderr, "bench_points: could not remove %s\n", tmpdir);
    if (rc != 0) {
        fprintf(stderr, "bench_points: stopped: %s\n", rc == -EINTR ? "interrupted" : tm_strerror(rc));
        rc = 1;
        goto out;
    }
    fflush(stderr);
    bp__print(&o, all, bj_peak_rss_kib(), caches);
    rc = 0;
out:
    tm_free(all);
    tm_free(pool_buf);
    return rc;
}
