/*
 * bench_target: a disk served at a point by tidemark's NBD exports against
 * qemu-nbd serving a raw file of the same bytes, read by the same client in
 * the same run (issue 6, performance.md).
 *
 * The disk (bt_disk.c): --size (2 GiB) with a replica base folded by
 * retention and --changed percent (10) of it rewritten since, in --write-size
 * (64 KiB) slots, so about 90% of a read comes from the base and 10% from
 * the journal; served at that point as MACHINE/DISK@<point id> by
 * tgt_exports_start on 127.0.0.1, port 0. Its raw twin holds the same
 * bytes, made from the seed, not read back through tidemark.
 *
 * Each round, for each server (the order alternates between rounds):
 *   - sequential 1 MiB reads of the whole disk, --seq-qd (8) in flight;
 *   - --rand-reads (20000) random 4 KiB reads, seeded, --qd (16) in flight;
 * each on a new connection (its handshake not timed), after the page cache
 * was dropped (root) and pre-warmed. In round 1 both servers' replies are
 * hashed by offset and must agree (the run fails if not). Then the time to
 * first byte: a fresh batch is received and processed, the cache dropped,
 * and MACHINE/DISK@latest-processed opened and read (bt_first.c).
 *
 * Figures are medians over --rounds (3); a ratio is the median of the
 * per-round ratios tidemark / qemu-nbd. Targets (issue 6): ratio >= 0.8 on
 * both patterns; first byte within 1 s. A table on stdout, then one JSON
 * object on the last line. MB = 10^6 bytes, KiB/MiB/GiB = 2^10/2^20/2^30.
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
#include "bench/target/bt.h"

#ifndef BT_DEFAULT_DIR
#define BT_DEFAULT_DIR "."
#endif

#define BT_MAX_ROUNDS 20
#define BT_SEQ_LEN (1u << 20)
#define BT_RAND_LEN 4096u
#define BT_POOL_LEN (16u << 20)
#define BT_MARGIN (512ull << 20)

/* The targets. */
#define BT_TARGET_RATIO 0.8
#define BT_TARGET_FIRST_S 1.0

enum { BT_TM = 0, BT_QEMU = 1, BT_NSERVERS = 2 };
static const char *const bt_server_name[BT_NSERVERS] = {"tidemark", "qemu-nbd"};

typedef struct bt_opts {
    uint64_t size, wsize, seed, rand_reads;
    double changed;
    unsigned rounds, qd, seq_qd;
    const char *dir;
    bool do_seq, do_rand, do_first;
    bool drop_caches, prewarm, quick;
} bt_opts_t;

/* One pass of one pattern on one server. */
typedef struct bt_pass {
    double secs, mb_s, iops;
    double qemu_cpu_s; /* qemu-nbd's CPU meanwhile */
    double p50_us, p99_us; /* random reads: per-read latency */
    bt_tcpu_t tcpu;    /* this process's CPU meanwhile, by thread */
    uint64_t sum;      /* round 1: the replies' hash */
} bt_pass_t;

typedef struct bt_round {
    bt_pass_t seq[BT_NSERVERS], rnd[BT_NSERVERS];
    bt_first_t first[BT_NSERVERS];
    uint64_t first_point;
} bt_round_t;

typedef struct bt_run {
    bt_opts_t o;
    char tmpdir[PATH_MAX];
    bt_disk_t *disk;
    bt_tidemark_t *tm;
    uint64_t first_off;  /* where the last round's first-byte read went */
    bool have_fo;
    bt_fo_t fo;          /* from a failover request (bt_failover.c) */
    bt_qemu_t qemu;
    int port[BT_NSERVERS];
    char name[BT_NSERVERS][128];
    bj_pool_t warm;
    bool caches_dropped;
    uint64_t *rand_offs, *seq_offs, *lat;
    size_t nseq;
    bt_round_t r[BT_MAX_ROUNDS];
    bool verified;
    long qemu_rss_kib;
} bt_run_t;

volatile sig_atomic_t bj_interrupted;

static void bt__on_signal(int sig)
{
    (void)sig;
    bj_interrupted = 1;
}

static void bt__usage(FILE *f)
{
    fprintf(f,
            "usage: bench_target [options]\n"
            "  --size S         the served disk (default 2G; K/M/G suffixes; a multiple of 1 MiB)\n"
            "  --changed P      percent of it written since the replica base (default 10)\n"
            "  --write-size S   bytes per changed write (default 64K; a power of two, 4K..1M)\n"
            "  --rounds R       rounds of every pass (default 3; medians)\n"
            "  --rand-reads N   random 4 KiB reads per pass (default 20000)\n"
            "  --qd N           random reads in flight (default 16)\n"
            "  --seq-qd N       sequential 1 MiB reads in flight (default 8)\n"
            "  --parts LIST     of seq,random,first (default all; the others print as 0)\n"
            "  --dir D          make the scratch folder bench-target-XXXXXX inside D\n"
            "                   (default $TMPDIR, else the benchmark's build folder)\n"
            "  --seed N         workload seed (default random; printed)\n"
            "  --no-drop-caches keep the page cache before each pass (default: drop it when root)\n"
            "  --no-prewarm     do not warm the page cache's memory before each pass\n"
            "  --quick          a 256 MiB disk and 2000 random reads, for smoke testing\n"
            "  --help\n"
            "Prints a table, then one JSON object on the last line. MB = 10^6 bytes.\n");
}

enum { BT_O_SIZE = 256, BT_O_CHANGED, BT_O_WSIZE, BT_O_ROUNDS, BT_O_RREADS, BT_O_QD, BT_O_SEQQD, BT_O_PARTS, BT_O_DIR,
       BT_O_SEED, BT_O_NODROP, BT_O_NOWARM };


static bool bt__parse_parts(const char *arg, bt_opts_t *o)
{
    char buf[128];
    if (strlen(arg) >= sizeof buf)
        return false;
    strcpy(buf, arg);
    o->do_seq = o->do_rand = o->do_first = false;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "seq") == 0)
            o->do_seq = true;
        else if (strcmp(t, "random") == 0)
            o->do_rand = true;
        else if (strcmp(t, "first") == 0)
            o->do_first = true;
        else
            return false;
    }
    return o->do_seq || o->do_rand || o->do_first;
}

/* 0, 1 for --help, or -1 after printing what was wrong. */
static int bt__parse_opts(int argc, char **argv, bt_opts_t *o)
{
    static const struct option longopts[] = {
        {"size", required_argument, NULL, BT_O_SIZE},
        {"changed", required_argument, NULL, BT_O_CHANGED},
        {"write-size", required_argument, NULL, BT_O_WSIZE},
        {"rounds", required_argument, NULL, BT_O_ROUNDS},
        {"rand-reads", required_argument, NULL, BT_O_RREADS},
        {"qd", required_argument, NULL, BT_O_QD},
        {"seq-qd", required_argument, NULL, BT_O_SEQQD},
        {"parts", required_argument, NULL, BT_O_PARTS},
        {"dir", required_argument, NULL, BT_O_DIR},
        {"seed", required_argument, NULL, BT_O_SEED},
        {"no-drop-caches", no_argument, NULL, BT_O_NODROP},
        {"no-prewarm", no_argument, NULL, BT_O_NOWARM},
        {"quick", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool set_size = false, set_reads = false, set_seed = false;
    uint64_t v;
    char *end;
    int c;

    memset(o, 0, sizeof *o);
    o->changed = 10;
    o->wsize = 64u << 10;
    o->rounds = 3;
    o->qd = 16;
    o->seq_qd = 8;
    o->do_seq = o->do_rand = o->do_first = true;
    o->drop_caches = o->prewarm = true;
    const char *tmp = getenv("TMPDIR");
    o->dir = tmp && *tmp ? tmp : BT_DEFAULT_DIR;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case BT_O_SIZE:
            if (!bj_parse_size(optarg, &o->size) || o->size % BT_COPY_WRITE)
                goto bad;
            set_size = true;
            break;
        case BT_O_CHANGED:
            errno = 0;
            o->changed = strtod(optarg, &end);
            if (errno || *end || !(o->changed >= 0 && o->changed <= 100))
                goto bad;
            break;
        case BT_O_WSIZE:
            if (!bj_parse_size(optarg, &o->wsize) || o->wsize < 4096 || o->wsize > BT_COPY_WRITE ||
                (o->wsize & (o->wsize - 1)))
                goto bad;
            break;
        case BT_O_ROUNDS:
            if (!bj_parse_uint(optarg, 1, BT_MAX_ROUNDS, &v))
                goto bad;
            o->rounds = (unsigned)v;
            break;
        case BT_O_RREADS:
            if (!bj_parse_uint(optarg, 1, 100000000, &o->rand_reads))
                goto bad;
            set_reads = true;
            break;
        case BT_O_QD:
            if (!bj_parse_uint(optarg, 1, 256, &v))
                goto bad;
            o->qd = (unsigned)v;
            break;
        case BT_O_SEQQD:
            if (!bj_parse_uint(optarg, 1, 256, &v))
                goto bad;
            o->seq_qd = (unsigned)v;
            break;
        case BT_O_PARTS:
            if (!bt__parse_parts(optarg, o))
                goto bad;
            break;
        case BT_O_DIR:
            o->dir = optarg;
            break;
        case BT_O_SEED:
            if (!bj_parse_uint(optarg, 0, UINT64_MAX, &o->seed))
                goto bad;
            set_seed = true;
            break;
        case BT_O_NODROP:
            o->drop_caches = false;
            break;
        case BT_O_NOWARM:
            o->prewarm = false;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'h':
            bt__usage(stdout);
            return 1;
        default:
            bt__usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "bench_target: unexpected argument '%s'\n", argv[optind]);
        bt__usage(stderr);
        return -1;
    }
    if (!set_size)
        o->size = o->quick ? (256u << 20) : (2ull << 30);
    if (!set_reads)
        o->rand_reads = o->quick ? 2000 : 20000;
    if (!set_seed)
        o->seed = tm_random_u64();
    return 0;

bad:
    fprintf(stderr, "bench_target: bad value '%s' for --%s\n", optarg, longopts[c - BT_O_SIZE].name);
    return -1;
}

/* Bytes the scratch folder needs: the raw twin and the base (the disk
 * each), the journal (the copy, about 55% of the disk once lz4 has had
 * it, until it is retired; and the changes), the pre-warm scratch. */
static uint64_t bt__space_needed(const bt_opts_t *o)
{
    uint64_t changed = (uint64_t)((double)o->size * o->changed / 100.0);
    return 3 * o->size + o->size * 6 / 10 + changed + BT_MARGIN;
}

/* ---- measuring ---------------------------------------------------------- */

/* qemu-nbd's CPU seconds so far (/proc/PID/stat utime + stime). */
static double bt__qemu_cpu(const bt_qemu_t *q)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)q->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command's ")" : state is field 3, utime 14, stime 15 */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The same start for every timed pass. */
static int bt__settle(bt_run_t *b)
{
    if (b->caches_dropped && !bj_drop_caches()) {
        fprintf(stderr, "bench_target: dropping the page cache stopped working\n");
        return -EPERM;
    }
    return b->o.prewarm ? bj_prewarm_in(b->tmpdir, b->o.size, &b->warm) : 0;
}

static int bt__cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One pass: a new connection (not timed), the reads (timed), close. */
static int bt__pass(bt_run_t *b, unsigned server, bool random, bool hash, bt_pass_t *out)
{
    char err[512];
    uint64_t size = 0;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = bt__settle(b)) != 0)
        return rc;
    int fd = bt_nbd_open(b->port[server], b->name[server], &size, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "bench_target: %s: %s\n", bt_server_name[server], err);
        return fd;
    }
    if (size != b->o.size) {
        fprintf(stderr, "bench_target: %s serves %" PRIu64 " bytes, the disk has %" PRIu64 "\n",
                bt_server_name[server], size, b->o.size);
        bt_nbd_close(fd);
        return TM_ECORRUPT;
    }
    const uint64_t *offs = random ? b->rand_offs : b->seq_offs;
    size_t n = random ? (size_t)b->o.rand_reads : b->nseq;
    uint32_t len = random ? BT_RAND_LEN : BT_SEQ_LEN;
    unsigned qd = random ? b->o.qd : b->o.seq_qd;
    bt_reads_result_t r;
    bt_tcpu_t t0, t1;
    bt_thread_cpu(&t0);
    double q0 = bt__qemu_cpu(&b->qemu);
    rc = bt_nbd_reads(fd, offs, n, len, qd, hash, random ? b->lat : NULL, &r, err, sizeof err);
    out->qemu_cpu_s = bt__qemu_cpu(&b->qemu) - q0;
    bt_thread_cpu(&t1);
    out->tcpu.client_s = t1.client_s - t0.client_s;
    out->tcpu.read_s = t1.read_s - t0.read_s;
    out->tcpu.other_s = t1.other_s - t0.other_s;
    bt_nbd_close(fd);
    if (rc) {
        fprintf(stderr, "bench_target: %s, %s reads: %s\n", bt_server_name[server], random ? "random" : "sequential",
                err);
        return rc;
    }
    out->secs = r.secs;
    out->mb_s = r.secs > 0 ? (double)r.bytes / 1e6 / r.secs : 0;
    out->iops = r.secs > 0 ? (double)r.reads / r.secs : 0;
    out->sum = r.sum;
    if (random) {
        qsort(b->lat, n, sizeof *b->lat, bt__cmp_u64);
        out->p50_us = (double)bj_percentile(b->lat, n, 0.50) / 1e3;
        out->p99_us = (double)bj_percentile(b->lat, n, 0.99) / 1e3;
    }
    return 0;
}

static int bt__round(bt_run_t *b, unsigned k)
{
    bt_round_t *r = &b->r[k];
    bool hash = k == 0;
    int rc;
    /* which server goes first alternates, so a drift favours neither */
    unsigned order[BT_NSERVERS] = {k % 2 ? BT_QEMU : BT_TM, k % 2 ? BT_TM : BT_QEMU};

    /* the random offsets: seeded per round, the same for both servers */
    uint64_t x = b->o.seed ^ (0x7a11ull + k);
    uint64_t blocks = b->o.size / BT_RAND_LEN;
    for (uint64_t i = 0; i < b->o.rand_reads; i++)
        b->rand_offs[i] = bt_rand(&x) % blocks * BT_RAND_LEN;

    for (unsigned s = 0; s < BT_NSERVERS && b->o.do_seq; s++)
        if ((rc = bt__pass(b, order[s], false, hash, &r->seq[order[s]])) != 0)
            return rc;
    for (unsigned s = 0; s < BT_NSERVERS && b->o.do_rand; s++)
        if ((rc = bt__pass(b, order[s], true, hash, &r->rnd[order[s]])) != 0)
            return rc;
    if (hash && (b->o.do_seq || b->o.do_rand)) {
        if (r->seq[BT_TM].sum != r->seq[BT_QEMU].sum || r->rnd[BT_TM].sum != r->rnd[BT_QEMU].sum) {
            fprintf(stderr,
                    "bench_target: MISMATCH: tidemark's export and qemu-nbd's raw twin returned different bytes "
                    "(sequential %016" PRIx64 " / %016" PRIx64 ", random %016" PRIx64 " / %016" PRIx64 "); "
                    "files kept in %s\n",
                    r->seq[BT_TM].sum, r->seq[BT_QEMU].sum, r->rnd[BT_TM].sum, r->rnd[BT_QEMU].sum, b->tmpdir);
            return TM_ECORRUPT;
        }
        b->verified = true;
    }

    /* time to first byte: a point no export has opened, a cold cache */
    uint64_t off;
    if (b->o.do_first && (rc = bt_disk_fresh(b->disk, &r->first_point, &off)) != 0)
        return rc;
    b->first_off = off;
    char err[512];
    for (unsigned s = 0; s < BT_NSERVERS && b->o.do_first; s++) {
        unsigned srv = order[s];
        if ((rc = bt__settle(b)) != 0)
            return rc;
        const char *name = srv == BT_TM ? BT_MACHINE "/" BT_DISK_NAME "@latest-processed" : b->name[BT_QEMU];
        if ((rc = bt_first_byte(b->port[srv], name, off, &r->first[srv], err, sizeof err)) != 0) {
            fprintf(stderr, "bench_target: first byte from %s: %s\n", bt_server_name[srv], err);
            return rc;
        }
    }
    fprintf(stderr,
            "  round %u/%u  sequential MB/s: tidemark %.1f, qemu-nbd %.1f (ratio %.3f); random IOPS: tidemark "
            "%.0f, qemu-nbd %.0f (ratio %.3f); first byte %.4f s\n",
            k + 1, b->o.rounds, r->seq[BT_TM].mb_s, r->seq[BT_QEMU].mb_s,
            r->seq[BT_QEMU].mb_s > 0 ? r->seq[BT_TM].mb_s / r->seq[BT_QEMU].mb_s : 0, r->rnd[BT_TM].iops,
            r->rnd[BT_QEMU].iops, r->rnd[BT_QEMU].iops > 0 ? r->rnd[BT_TM].iops / r->rnd[BT_QEMU].iops : 0,
            r->first[BT_TM].total_s);
    return 0;
}

/* ---- reporting ---------------------------------------------------------- */

typedef double bt_vec_t[BT_MAX_ROUNDS];

typedef struct bt_pat_fig {
    bt_vec_t secs[BT_NSERVERS], mb_s[BT_NSERVERS], iops[BT_NSERVERS];
    /* CPU seconds in the pass: the server's (tidemark: its read threads
     * and its other threads), the client's */
    bt_vec_t srv_cpu[BT_NSERVERS], cli_cpu[BT_NSERVERS], rd_cpu, oth_cpu;
    bt_vec_t p50[BT_NSERVERS], p99[BT_NSERVERS], ratio;
} bt_pat_fig_t;

typedef struct bt_figs {
    bt_pat_fig_t seq, rnd;
    bt_vec_t first[BT_NSERVERS], first_open[BT_NSERVERS], first_read[BT_NSERVERS];
} bt_figs_t;

static double bt__med(const double *v, unsigned n)
{
    double t[BT_MAX_ROUNDS];
    memcpy(t, v, n * sizeof *t);
    return bj_median(t, n);
}

static void bt__pat_figs(const bt_pass_t *p, unsigned i, bt_pat_fig_t *g)
{
    for (unsigned s = 0; s < BT_NSERVERS; s++) {
        g->secs[s][i] = p[s].secs;
        g->mb_s[s][i] = p[s].mb_s;
        g->iops[s][i] = p[s].iops;
        g->srv_cpu[s][i] = s == BT_TM ? p[s].tcpu.read_s + p[s].tcpu.other_s : p[s].qemu_cpu_s;
        g->cli_cpu[s][i] = p[s].tcpu.client_s;
        g->p50[s][i] = p[s].p50_us;
        g->p99[s][i] = p[s].p99_us;
    }
    /* the same bytes both sides: the ratio of the rates */
    g->rd_cpu[i] = p[BT_TM].tcpu.read_s;
    g->oth_cpu[i] = p[BT_TM].tcpu.other_s;
    g->ratio[i] = p[BT_QEMU].mb_s > 0 ? p[BT_TM].mb_s / p[BT_QEMU].mb_s : 0;
}

static const char *bt__yes(bool b)
{
    return b ? "true" : "false";
}

static void bt__json_pat(const char *key, const bt_opts_t *o, const bt_pat_fig_t *g, uint32_t len, unsigned qd,
                         uint64_t reads, bool random)
{
    unsigned n = o->rounds;
#define M(v) bt__med((v), n)
    printf(",\"%s\":{\"read_bytes\":%" PRIu32 ",\"reads\":%" PRIu64 ",\"qd\":%u", key, len, reads, qd);
    for (unsigned s = 0; s < BT_NSERVERS; s++) {
        printf(",\"%s\":{\"mb_s\":%.1f,\"iops\":%.0f,\"secs\":%.3f,\"server_cpu_s\":%.3f,\"client_cpu_s\":%.3f",
               s == BT_TM ? "tidemark" : "qemu_nbd", M(g->mb_s[s]), M(g->iops[s]), M(g->secs[s]), M(g->srv_cpu[s]),
               M(g->cli_cpu[s]));
        if (s == BT_TM)
            printf(",\"read_threads_cpu_s\":%.3f,\"other_threads_cpu_s\":%.3f", M(g->rd_cpu), M(g->oth_cpu));
        if (random)
            printf(",\"p50_us\":%.1f,\"p99_us\":%.1f", M(g->p50[s]), M(g->p99[s]));
        printf("}");
    }
    printf(",\"ratio\":%.4f,\"target_ratio\":%.1f,\"meets_target\":%s,\"rounds\":[", M(g->ratio), BT_TARGET_RATIO,
           bt__yes(M(g->ratio) >= BT_TARGET_RATIO));
    for (unsigned i = 0; i < n; i++)
        printf("%s{\"tidemark_mb_s\":%.1f,\"qemu_nbd_mb_s\":%.1f,\"ratio\":%.4f}", i ? "," : "", g->mb_s[BT_TM][i],
               g->mb_s[BT_QEMU][i], g->ratio[i]);
    printf("]}");
#undef M
}

static void bt__print_pat(const char *label, const bt_opts_t *o, const bt_pat_fig_t *g)
{
    unsigned n = o->rounds;
#define M(v) bt__med((v), n)
    double ratio = M(g->ratio);
    printf("%-24s %10.1f %9.0f %12.1f %9.0f %8.3f  >= %.1f %s\n", label, M(g->mb_s[BT_TM]), M(g->iops[BT_TM]),
           M(g->mb_s[BT_QEMU]), M(g->iops[BT_QEMU]), ratio, BT_TARGET_RATIO,
           ratio >= BT_TARGET_RATIO ? "met" : "NOT MET");
#undef M
}

static void bt__print_cpu(const char *label, const bt_opts_t *o, const bt_pat_fig_t *g, double reads)
{
    unsigned n = o->rounds;
#define M(v) bt__med((v), n)
    double us = 1e6 / reads;
    printf("  %-10s tidemark %7.1f (%.1f + %.1f), qemu-nbd %7.1f; the client %.1f / %.1f\n", label,
           M(g->srv_cpu[BT_TM]) * us, M(g->rd_cpu) * us, M(g->oth_cpu) * us, M(g->srv_cpu[BT_QEMU]) * us,
           M(g->cli_cpu[BT_TM]) * us, M(g->cli_cpu[BT_QEMU]) * us);
#undef M
}

static void bt__print(const bt_run_t *b, long rss)
{
    const bt_opts_t *o = &b->o;
    const bt_disk_t *d = b->disk;
    unsigned n = o->rounds;
    char sz[32], wsz[32], lbl[64];
    bt_figs_t *f = tm_calloc(1, sizeof *f);
    if (!f) {
        fprintf(stderr, "bench_target: out of memory\n");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        bt__pat_figs(b->r[i].seq, i, &f->seq);
        bt__pat_figs(b->r[i].rnd, i, &f->rnd);
        for (unsigned s = 0; s < BT_NSERVERS; s++) {
            f->first[s][i] = b->r[i].first[s].total_s;
            f->first_open[s][i] = b->r[i].first[s].open_s;
            f->first_read[s][i] = b->r[i].first[s].read_s;
        }
    }
    const char *caches = b->caches_dropped ? "dropped before each pass" : "warm (not dropped)";
    double pct = o->size ? 100.0 * (double)d->changed_bytes / (double)o->size : 0;
    bj_size_str(o->size, sz, sizeof sz);
    bj_size_str(o->wsize, wsz, sizeof wsz);
#define M(v) bt__med((v), n)
    printf("bench_target: medians of %u round(s); MB = 10^6 bytes; seed %" PRIu64 "\n", n, o->seed);
    printf("a %s disk served at point %" PRIu64 ": its replica base (folded by retention, at %" PRIu64 ")\n"
           "and %" PRIu64 " writes of %s since, %.1f%% of the disk, in the journal; page cache %s%s\n",
           sz, d->point, d->base_seq, d->changed_writes, wsz, pct, caches, o->prewarm ? ", then pre-warmed" : "");
    printf("\n%-24s %20s %22s %8s  %s\n", "", "tidemark", "qemu-nbd", "", "");
    printf("%-24s %10s %9s %12s %9s %8s  %s\n", "pattern", "MB/s", "IOPS", "MB/s", "IOPS", "ratio", "target");
    snprintf(lbl, sizeof lbl, "sequential 1 MiB, QD %u", o->seq_qd);
    if (o->do_seq)
        bt__print_pat(lbl, o, &f->seq);
    else
        printf("%-24s (not run)\n", lbl);
    snprintf(lbl, sizeof lbl, "random 4 KiB, QD %u", o->qd);
    if (o->do_rand)
        bt__print_pat(lbl, o, &f->rnd);
    else
        printf("%-24s (not run)\n", lbl);
    printf("ratio = tidemark / qemu-nbd, the median of the per-round ratios\n");
    if (o->do_rand)
        printf("%" PRIu64 " random reads per pass; latency p50/p99: tidemark %.0f/%.0f us, qemu-nbd %.0f/%.0f us\n",
               o->rand_reads, M(f->rnd.p50[BT_TM]), M(f->rnd.p99[BT_TM]), M(f->rnd.p50[BT_QEMU]),
               M(f->rnd.p99[BT_QEMU]));
    double first = M(f->first[BT_TM]);
    if (o->do_first) {
    printf("\nfirst byte of %s/%s@latest-processed at a point no export had opened, %s: %.4f s\n"
           "  (open: connect, handshake, NBD_OPT_GO %.4f s; the first 4 KiB read %.4f s); target < %.1f s: %s\n",
           BT_MACHINE, BT_DISK_NAME, b->caches_dropped ? "cold cache" : "warm cache", first,
           M(f->first_open[BT_TM]), M(f->first_read[BT_TM]), BT_TARGET_FIRST_S,
           first < BT_TARGET_FIRST_S ? "met" : "NOT MET");
    printf("  for scale, qemu-nbd (the same open and read of a file it already serves): %.4f s "
           "(open %.4f s, read %.4f s)\n",
           M(f->first[BT_QEMU]), M(f->first_open[BT_QEMU]), M(f->first_read[BT_QEMU]));
    printf("from a failover request (tidemark serve, POST /v1/jobs failover at latest-processed, the job polled, "
           "%s/%s@failover opened and read), one sample, %s: %.4f s (job %.4f s, open and read %.4f s); "
           "target < %.1f s: %s\n",
           BT_MACHINE, BT_DISK_NAME, b->caches_dropped ? "cold cache" : "warm cache", b->fo.total_s, b->fo.job_s,
           b->fo.open_read_s, BT_TARGET_FIRST_S, b->fo.total_s < BT_TARGET_FIRST_S ? "met" : "NOT MET");
    }
    if (o->do_seq || o->do_rand)
        printf("\nCPU per read, us (the servers': tidemark's read threads + its other threads, the loop's mostly; "
               "qemu-nbd's):\n");
    if (o->do_seq)
        bt__print_cpu("sequential", o, &f->seq, (double)b->nseq);
    if (o->do_rand)
        bt__print_cpu("random", o, &f->rnd, (double)o->rand_reads);
    if (o->do_seq || o->do_rand)
        printf("both servers' replies hashed in round 1 and equal: %s\n", b->verified ? "yes" : "no");
    printf("setup (untimed): feeding %.1f s (journal %.1f MiB), the last point %.2f s after it, folding %.1f s\n",
           d->feed_s, (double)d->jnl_bytes / 1048576, d->process_s, d->fold_s);
    printf("\npeak RSS: this process %ld KiB (the exports, the points stage, the client, the setup); qemu-nbd %ld "
           "KiB\n",
           rss, b->qemu_rss_kib);

    /* the JSON line */
    printf("{\"bench\":\"target\",\"unit_mb\":1000000,\"runs\":%u,\"nproc\":%ld,\"peak_rss_kib\":%ld,"
           "\"qemu_nbd_peak_rss_kib\":%ld,\"seed\":%" PRIu64 ",\"page_cache\":\"%s\",\"prewarm\":%s,"
           "\"verified\":%s,\"baseline\":\"qemu-nbd --read-only --persistent -f raw --cache=writeback "
           "--aio=threads\"",
           n, sysconf(_SC_NPROCESSORS_ONLN), rss, b->qemu_rss_kib, o->seed, b->caches_dropped ? "dropped" : "warm",
           bt__yes(o->prewarm), bt__yes(b->verified));
    printf(",\"disk\":{\"bytes\":%" PRIu64 ",\"point\":%" PRIu64 ",\"base_seq\":%" PRIu64 ",\"changed_pct\":%.2f,"
           "\"write_bytes\":%" PRIu64 ",\"changed_writes\":%" PRIu64 ",\"changed_bytes\":%" PRIu64
           ",\"setup\":{\"feed_s\":%.2f,\"process_s\":%.3f,\"fold_s\":%.2f,\"fold_passes\":%u,\"jnl_bytes\":%" PRIu64
           "}}",
           o->size, d->point, d->base_seq, pct, o->wsize, d->changed_writes, d->changed_bytes, d->feed_s,
           d->process_s, d->fold_s, d->fold_passes, d->jnl_bytes);
    if (o->do_seq)
        bt__json_pat("sequential", o, &f->seq, BT_SEQ_LEN, o->seq_qd, b->nseq, false);
    else
        printf(",\"sequential\":null");
    if (o->do_rand)
        bt__json_pat("random", o, &f->rnd, BT_RAND_LEN, o->qd, o->rand_reads, true);
    else
        printf(",\"random\":null");
    if (!o->do_first) {
        printf(",\"first_byte\":null}\n");
        tm_free(f);
        return;
    }
    printf(",\"failover_first_byte\":{\"selector\":\"latest-processed\",\"total_s\":%.4f,\"job_s\":%.4f,"
           "\"open_read_s\":%.4f,\"target_s\":%.1f,\"meets_target\":%s}",
           b->fo.total_s, b->fo.job_s, b->fo.open_read_s, BT_TARGET_FIRST_S, bt__yes(b->fo.total_s < BT_TARGET_FIRST_S));
    printf(",\"first_byte\":{\"selector\":\"latest-processed\",\"read_bytes\":%u,\"tidemark_s\":%.4f,"
           "\"open_s\":%.4f,\"read_s\":%.4f,\"qemu_nbd_s\":%.4f,\"qemu_nbd_open_s\":%.4f,\"qemu_nbd_read_s\":%.4f,"
           "\"target_s\":%.1f,\"meets_target\":%s,\"rounds\":[",
           BT_RAND_LEN, first, M(f->first_open[BT_TM]), M(f->first_read[BT_TM]), M(f->first[BT_QEMU]),
           M(f->first_open[BT_QEMU]), M(f->first_read[BT_QEMU]),
           BT_TARGET_FIRST_S, bt__yes(first < BT_TARGET_FIRST_S));
    for (unsigned i = 0; i < n; i++)
        printf("%s{\"point\":%" PRIu64 ",\"tidemark_s\":%.4f,\"qemu_nbd_s\":%.4f}", i ? "," : "",
               b->r[i].first_point, f->first[BT_TM][i], f->first[BT_QEMU][i]);
    printf("]}}\n");
    tm_free(f);
#undef M
}

/* ---- the run ------------------------------------------------------------ */

static int bt__run(bt_run_t *b)
{
    const bt_opts_t *o = &b->o;
    int rc;

    b->nseq = (size_t)(o->size / BT_SEQ_LEN);
    b->seq_offs = tm_calloc(b->nseq, sizeof *b->seq_offs);
    b->rand_offs = tm_calloc((size_t)o->rand_reads, sizeof *b->rand_offs);
    b->lat = tm_calloc((size_t)o->rand_reads, sizeof *b->lat);
    if (!b->seq_offs || !b->rand_offs || !b->lat)
        return -ENOMEM;
    for (size_t i = 0; i < b->nseq; i++)
        b->seq_offs[i] = (uint64_t)i * BT_SEQ_LEN;

    bt_disk_cfg_t dc = {
        .dir = b->tmpdir,
        .size = o->size,
        .changed_pct = o->changed,
        .wsize = (uint32_t)o->wsize,
        .seed = o->seed,
    };
    if ((rc = bt_disk_make(&dc, &b->disk)) != 0)
        return rc;
    if ((rc = bt_tidemark_start(b->disk->pts, b->disk->jnl, &b->tm)) != 0)
        return rc;
    b->port[BT_TM] = bt_tidemark_port(b->tm);
    /* the same name on both, the point's id */
    for (unsigned s = 0; s < BT_NSERVERS; s++)
        snprintf(b->name[s], sizeof b->name[s], "%s/%s@%" PRIu64, BT_MACHINE, BT_DISK_NAME, b->disk->point);
    if ((rc = bt_qemu_start(b->disk->raw, b->name[BT_QEMU], &b->qemu)) != 0)
        return rc;
    b->port[BT_QEMU] = b->qemu.port;
    fprintf(stderr, "  servers: tidemark on 127.0.0.1:%d, qemu-nbd on 127.0.0.1:%d, export %s\n", b->port[BT_TM],
            b->port[BT_QEMU], b->name[BT_TM]);

    b->caches_dropped = o->drop_caches && bj_drop_caches();
    if (o->drop_caches && !b->caches_dropped)
        fprintf(stderr, "bench_target: cannot drop the page cache (not root?): every pass reads a warm cache\n");
    for (unsigned k = 0; k < o->rounds; k++) {
        if (bj_interrupted)
            return -EINTR;
        if ((rc = bt__round(b, k)) != 0)
            return rc;
    }
    b->qemu_rss_kib = bt_qemu_peak_rss_kib(&b->qemu);
    if (!o->do_first)
        return 0;
    /* the appliance itself, from a failover request: it needs the journal
     * and the index to itself */
    bt_tidemark_stop(b->tm);
    b->tm = NULL;
    bt_disk_close_stores(b->disk);
    char err[1024];
    if ((rc = bt_failover_first_byte(b->tmpdir, b->first_off, &b->fo, err, sizeof err)) != 0) {
        fprintf(stderr, "bench_target: from a failover request: %s\n", err);
        return rc;
    }
    b->have_fo = true;
    fprintf(stderr, "  failover request to first byte: %.4f s (job %.4f s, open and read %.4f s)\n", b->fo.total_s,
            b->fo.job_s, b->fo.open_read_s);
    return 0;
}

static void bt__teardown(bt_run_t *b)
{
    bt_qemu_stop(&b->qemu);
    bt_tidemark_stop(b->tm);
    b->tm = NULL;
    bt_disk_free(b->disk);
    b->disk = NULL;
    tm_free(b->seq_offs);
    tm_free(b->rand_offs);
    tm_free(b->lat);
}

int main(int argc, char **argv)
{
    bt_run_t *b = tm_calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "bench_target: out of memory\n");
        return 1;
    }
    b->qemu.pid = -1;
    int rc = bt__parse_opts(argc, argv, &b->o);
    if (rc != 0) {
        tm_free(b);
        return rc > 0 ? 0 : 2;
    }
    const bt_opts_t *o = &b->o;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bt__on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* the exports write to sockets a client may close (nbd.h) */
    signal(SIGPIPE, SIG_IGN);
    tm_log_set_level(TM_LOG_WARN);

    if (snprintf(b->tmpdir, sizeof b->tmpdir, "%s/bench-target-XXXXXX", o->dir) >= (int)sizeof b->tmpdir) {
        fprintf(stderr, "bench_target: --dir is too long\n");
        tm_free(b);
        return 2;
    }
    if (!mkdtemp(b->tmpdir)) {
        fprintf(stderr, "bench_target: cannot make a folder in %s: %s\n", o->dir, strerror(errno));
        tm_free(b);
        return 1;
    }
    uint64_t need = bt__space_needed(o), have = bj_free_bytes(b->tmpdir);
    if (have < need) {
        fprintf(stderr,
                "bench_target: not enough free space in %s: a %.1f GiB disk needs about %.1f GiB, there are "
                "%.1f GiB (pick another --dir, or a smaller --size)\n",
                o->dir, (double)o->size / (1u << 30), (double)need / (1u << 30), (double)have / (1u << 30));
        rmdir(b->tmpdir);
        tm_free(b);
        return 1;
    }
    if (bj_on_tmpfs(b->tmpdir))
        fprintf(stderr, "bench_target: warning: %s is a tmpfs: the figures say nothing about a disk\n", o->dir);
    fprintf(stderr, "bench_target: scratch %s (%.1f GiB free, about %.1f GiB needed), seed %" PRIu64 "\n",
            b->tmpdir, (double)have / (1u << 30), (double)need / (1u << 30), o->seed);

    uint8_t *pool = tm_malloc(BT_POOL_LEN);
    if (!pool) {
        fprintf(stderr, "bench_target: out of memory\n");
        rmdir(b->tmpdir);
        tm_free(b);
        return 1;
    }
    bj_fill_random(pool, BT_POOL_LEN, o->seed);
    b->warm = (bj_pool_t){pool, BT_POOL_LEN};

    rc = bt__run(b);
    if (rc == 0)
        fflush(stderr);
    long rss = bj_peak_rss_kib();
    if (rc == 0)
        bt__print(b, rss);
    bt__teardown(b);
    if (rc == TM_ECORRUPT) {
        fprintf(stderr, "bench_target: FAILED: a check above failed; %s is kept\n", b->tmpdir);
        rc = 1;
    } else {
        if (bj_rmtree(b->tmpdir) != 0)
            fprintf(stderr, "bench_target: could not remove %s\n", b->tmpdir);
        if (rc != 0) {
            fprintf(stderr, "bench_target: stopped: %s\n", rc == -EINTR ? "interrupted" : tm_strerror(rc));
            rc = 1;
        }
    }
    tm_free(pool);
    tm_free(b);
    return rc;
}
