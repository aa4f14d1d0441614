/*
 * `tidemark serve [--data DIR] [--config FILE] [--segment-size BYTES] [--agents ADDR] [--api ADDR]`
 *
 * The appliance opens (and so recovers) its journal, reports what it found
 * on stdout, opens the index and starts the processor (points/), starts
 * ingest (agents connect on --agents), the NBD exports of disks at points
 * (--nbd) and the API (--api), and runs a libuv loop until SIGINT or
 * SIGTERM. Then, in this order: the API closes (its requests finish, its
 * jobs are cancelled), the NBD exports close, the processor stops, ingest
 * closes its listener and connections and lets the journal appends already
 * made complete, the journal closes, and it exits 0. Settings: embedded
 * defaults, then the config file, then flags (config.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/addr.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "cli/cmd.h"
#include "cli/config.h"
#include "cli/serve_api.h"
#include "cli/serve_failover.h"
#include "cli/serve_groups.h"
#include "cli/serve_tags.h"
#include "cli/serve_resync.h"
#include "ingest/ingest.h"
#include "journal/journal.h"
#include "points/points.h"
#include "target/export.h"

typedef struct cli_serve_flags {
    const char *data;
    const char *config;
    const char *segment_size;
    const char *agents;
    const char *api;
    const char *nbd;
} cli_serve_flags_t;

typedef struct cli_serve {
    uv_loop_t loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    jnl_t *jnl;
    const cli_config_t *cfg;
    ingest_t *ingest;
    pts_t *pts;
    cli_api_t api;
    bool api_up;
    tgt_exports_t *nbd;
    cli_tags_t *tags;
    cns_t *cns;
    bool stopping;
    bool reported; /* the failure was already explained */
} cli_serve_t;

static void cli__serve_usage(FILE *out)
{
    fputs("usage: tidemark serve [--data DIR] [--config FILE] [--segment-size BYTES] [--agents ADDR]\n"
          "                      [--api ADDR] [--nbd ADDR]\n"
          "  --data DIR            data folder (default " CLI_DEFAULT_DATA ", created 0700)\n"
          "  --config FILE         settings file: `key = value` lines, keys data,\n"
          "                        journal.segment_size, agents, api, nbd, ingest.window,\n"
          "                        ingest.budget, ingest.handshake_timeout and\n"
          "                        points.cadence; flags override it\n"
          "  --segment-size BYTES  journal segment size for new segments; K, M, G allowed\n"
          "  --agents ADDR         where agents connect, HOST:PORT or [V6]:PORT\n"
          "                        (default " CLI_DEFAULT_AGENTS "; port 0 picks a free port)\n"
          "  --api ADDR            the HTTP/JSON API for the orchestrator and the\n"
          "                        command line (default " CLI_DEFAULT_API ")\n"
          "  --nbd ADDR            disks at points served over NBD as\n"
          "                        MACHINE/DISK@SELECTOR (default " CLI_DEFAULT_NBD ")\n",
          out);
}

/* Matches `--name VALUE` and `--name=VALUE`; advances *i past a separate
 * value. Returns 1 matched, 0 not this option, -1 the value is missing. */
static int cli__opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/* 0, or the exit status to return (usage already printed). */
static int cli__serve_parse(int argc, char **argv, cli_serve_flags_t *fl, bool *help)
{
    static const char *const names[] = {"--data", "--config", "--segment-size", "--agents", "--api", "--nbd"};
    const char **slots[] = {&fl->data, &fl->config, &fl->segment_size, &fl->agents, &fl->api, &fl->nbd};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            *help = true;
            return 0;
        }
        int m = 0;
        for (size_t k = 0; k < sizeof names / sizeof names[0] && m == 0; k++) {
            m = cli__opt_value(argc, argv, &i, names[k], slots[k]);
            if (m < 0) {
                fprintf(stderr, "tidemark: serve: %s needs a value\n", names[k]);
                goto out_usage;
            }
            if (m > 0 && (*slots[k])[0] == '\0') {
                fprintf(stderr, "tidemark: serve: %s needs a non-empty value\n", names[k]);
                goto out_usage;
            }
        }
        if (m == 0) {
            if (argv[i][0] == '-')
                fprintf(stderr, "tidemark: serve: unknown option '%s'\n", argv[i]);
            else
                fprintf(stderr, "tidemark: serve: unexpected argument '%s'\n", argv[i]);
            goto out_usage;
        }
    }
    return 0;

out_usage:
    cli__serve_usage(stderr);
    return CLI_EXIT_USAGE;
}

/* Defaults, then the file, then the flags. 0 or an exit status. */
static int cli__serve_settings(const cli_serve_flags_t *fl, cli_config_t *cfg)
{
    char err[PATH_MAX + 256];
    int rc = cli_config_defaults(cfg);
    if (rc != 0) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    if (fl->config) {
        rc = cli_config_load(cfg, fl->config, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "tidemark: config: %s\n", err);
            return rc == -ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
        }
    }
    if (fl->data && cli_config_set_data(cfg, fl->data) != 0) {
        fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
        return CLI_EXIT_FAIL;
    }
    if (fl->agents) {
        struct sockaddr_storage ss;
        if (tm_addr_parse(fl->agents, &ss) != 0) {
            fprintf(stderr, "tidemark: serve: --agents: '%s' is not an address (HOST:PORT or [V6]:PORT, numeric host)\n",
                    fl->agents);
            cli__serve_usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (cli_config_set_agents(cfg, fl->agents) != 0) {
            fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
            return CLI_EXIT_FAIL;
        }
    }
    if (fl->nbd) {
        struct sockaddr_storage ss;
        if (tm_addr_parse(fl->nbd, &ss) != 0) {
            fprintf(stderr, "tidemark: serve: --nbd: '%s' is not an address (HOST:PORT or [V6]:PORT, numeric host)\n",
                    fl->nbd);
            cli__serve_usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (cli_config_set_nbd(cfg, fl->nbd) != 0) {
            fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
            return CLI_EXIT_FAIL;
        }
    }
    if (fl->api) {
        struct sockaddr_storage ss;
        if (tm_addr_parse(fl->api, &ss) != 0) {
            fprintf(stderr, "tidemark: serve: --api: '%s' is not an address (HOST:PORT or [V6]:PORT, numeric host)\n",
                    fl->api);
            cli__serve_usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (cli_config_set_api(cfg, fl->api) != 0) {
            fprintf(stderr, "tidemark: %s\n", tm_strerror(-ENOMEM));
            return CLI_EXIT_FAIL;
        }
    }
    if (fl->segment_size &&
        cli_config_parse_segment_size(fl->segment_size, &cfg->segment_size, err, sizeof err) != 0) {
        fprintf(stderr, "tidemark: serve: --segment-size: %s\n", err);
        cli__serve_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* Create dir (mode 0700) unless it is there already. 0 or -errno. */
static int cli__ensure_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static void cli__fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " bytes", n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void cli__report(const char *data_dir, const char *jdir, const jnl_options_t *opts, jnl_t *j)
{
    jnl_stats_t st;
    char abs[PATH_MAX];
    char size[32];
    char maxrec[32];
    char use[32];

    jnl_get_stats(j, &st);
    cli__fmt_bytes(opts->segment_size ? opts->segment_size : JNL_DEFAULT_SEGMENT, size, sizeof size);
    cli__fmt_bytes(opts->max_record ? opts->max_record : JNL_DEFAULT_MAX_RECORD, maxrec, sizeof maxrec);
    cli__fmt_bytes(st.disk_bytes, use, sizeof use);

    printf("tidemark %s\n", TM_VERSION);
    printf("  data folder: %s\n", realpath(data_dir, abs) ? abs : data_dir);
    /* A new journal's id reaches the disk with its first segment; until
     * then each start picks another. */
    printf("  journal:     %s (id %016" PRIx64 "%s)\n", realpath(jdir, abs) ? abs : jdir, st.journal_id,
           st.segments ? "" : ", not yet on disk");
    printf("  segments:    %" PRIu64 " (+%" PRIu64 " spare); new segments %s each, records up to %s\n",
           st.segments, st.spares, size, maxrec);
    if (st.durable_lsn == 0)
        printf("  records:     none yet (next LSN %" PRIu64 ")\n", st.next_lsn);
    else if (st.first_lsn > st.durable_lsn)
        printf("  records:     none held (LSNs up to %" PRIu64 " retired; next %" PRIu64 ")\n", st.durable_lsn,
               st.next_lsn);
    else
        printf("  records:     first LSN %" PRIu64 ", durable LSN %" PRIu64 " (next %" PRIu64 ")\n", st.first_lsn,
               st.durable_lsn, st.next_lsn);
    if (st.disk_bytes < 1024)
        printf("  disk use:    %s\n", use);
    else
        printf("  disk use:    %s (%" PRIu64 " bytes)\n", use, st.disk_bytes);

    switch (st.end_kind) {
    case JNL_END_EMPTY:
        printf("  recovery:    empty (a new journal)\n");
        break;
    case JNL_END_CLEAN:
        printf("  recovery:    clean end at segment %" PRIu64 ", offset %" PRIu64 "\n", st.end_pos.seg,
               st.end_pos.off);
        break;
    case JNL_END_TORN:
        printf("  recovery:    torn tail cut at segment %" PRIu64 ", offset %" PRIu64 ": %s", st.end_pos.seg,
               st.end_pos.off, st.end_reason[0] ? st.end_reason : "no reason given");
        if (st.torn_records)
            printf(" (%" PRIu64 " unacknowledged record%s dropped)", st.torn_records,
                   st.torn_records == 1 ? "" : "s");
        printf("\n");
        break;
    }
    if (st.error != 0)
        printf("  state:       refusing appends after a failure: %s\n", tm_strerror(st.error));
}

/* Ingest is gone (connections closed, its appends completed): the journal
 * can close. This runs from a libuv close callback, not a journal completion
 * callback (jnl_close's rule). */
static void cli__ingest_stopped(void *arg)
{
    cli_serve_t *s = arg;
    s->ingest = NULL;
    jnl_close(s->jnl);
    jnl_destroy(s->jnl);
    s->jnl = NULL;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

/* Every agent is a descriptor: take the whole hard limit, since libuv drops
 * connections past the soft one silently (it accepts and closes them). */
static void cli__raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    printf("tidemark: open files up to %llu (each agent takes one)\n", (unsigned long long)rl.rlim_cur);
}

/* The NBD exports are closed (their reads done, their pins given back):
 * stop the processor (it reads the journal), then ingest, whose end closes
 * the journal. */
static void cli__nbd_stopped(void *arg)
{
    cli_serve_t *s = arg;
    s->nbd = NULL;
    cli_resync_stop(); /* resync's calls read through pts */
    pts_close(s->pts);
    s->pts = NULL;
    ingest_stop(s->ingest, cli__ingest_stopped, s);
}

/* The group rounds are over (their recordings read through pts): close
 * the NBD exports next. */
static void cli__cns_stopped(void *arg)
{
    cli_serve_t *s = arg;
    s->cns = NULL;
    if (s->nbd)
        tgt_exports_stop(s->nbd, cli__nbd_stopped, s);
    else
        cli__nbd_stopped(s);
}

/* The API is closed: stop the group rounds next. */
static void cli__api_stopped(void *arg)
{
    cli_serve_t *s = arg;
    s->api_up = false;
    cns_stop(s->cns, cli__cns_stopped, s);
}

static void cli__on_signal(uv_signal_t *h, int signum)
{
    cli_serve_t *s = h->data;
    if (s->stopping)
        return;
    s->stopping = true;
    cli_tags_stop(s->tags);
    s->tags = NULL;
    tm_info("tidemark: received %s, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    if (s->api_up)
        cli_api_stop(&s->api, cli__api_stopped, s);
    else
        cli__api_stopped(s);
}

/* The index's machines as ingest takes them (ingest_options_t.known), and
 * those whose failover was committed (ingest_options_t.retired: their
 * agents are refused). */
static int cli__known_machines(pts_t *p, ingest_known_t **out, const char ***retired, ingest_options_t *io)
{
    pts_machine_t *ms;
    size_t n;
    uint64_t next_lsn;
    int rc = pts_machines_at(p, &ms, &n, &next_lsn);
    if (rc)
        return rc;
    ingest_known_t *k = tm_calloc(n ? n : 1, sizeof *k);
    wire_disk_t *disks = tm_calloc(n ? n * WIRE_MAX_DISKS : 1, sizeof *disks);
    const char **ret = tm_calloc(n ? n : 1, sizeof *ret);
    if (!k || !disks || !ret) {
        tm_free(k);
        tm_free(disks);
        tm_free(ret);
        tm_free(ms);
        return -ENOMEM;
    }
    size_t nret = 0;
    /* k[0].disks owns the one array of all of them, even with no machine */
    k[0].disks = disks;
    for (size_t i = 0; i < n; i++) {
        wire_disk_t *d = disks + i * WIRE_MAX_DISKS;
        uint64_t synced = 0, resync = 0;
        for (unsigned j = 0; j < ms[i].ndisks; j++) {
            memcpy(d[j].name, ms[i].disks[j].name, sizeof d[j].name);
            d[j].size = ms[i].disks[j].size;
            if (ms[i].disks[j].synced)
                synced |= UINT64_C(1) << j;
            if (ms[i].disks[j].resync)
                resync |= UINT64_C(1) << j;
        }
        k[i] = (ingest_known_t){.name = tm_strdup(ms[i].name), .disks = d, .ndisks = (uint16_t)ms[i].ndisks,
                                .synced = synced, .seq = ms[i].seq, .resync = resync};
        if (!k[i].name)
            rc = -ENOMEM;
        else if (ms[i].failover == PTS_FO_COMMITTED)
            ret[nret++] = k[i].name;
    }
    tm_free(ms);
    io->known = k;
    io->nknown = n;
    io->known_lsn = next_lsn;
    io->retired = ret;
    io->nretired = nret;
    *out = k;
    *retired = ret;
    return rc;
}

static void cli__known_free(ingest_known_t *k, size_t n)
{
    if (!k)
        return;
    for (size_t i = 0; i < n; i++)
        tm_free((char *)k[i].name);
    tm_free((void *)k[0].disks); /* one array for all of them */
    tm_free(k);
}

/* Run until a signal; the journal is closed by then. 0 or a libuv error. */
static int cli__serve_loop(cli_serve_t *s)
{
    int rc = uv_loop_init(&s->loop);
    if (rc != 0)
        return rc;

    rc = uv_signal_init(&s->loop, &s->sigint);
    if (rc != 0)
        goto out_close_loop;
    rc = uv_signal_init(&s->loop, &s->sigterm);
    if (rc != 0)
        goto out_close_sigint;
    s->sigint.data = s;
    s->sigterm.data = s;
    rc = uv_signal_start(&s->sigint, cli__on_signal, SIGINT);
    if (rc == 0)
        rc = uv_signal_start(&s->sigterm, cli__on_signal, SIGTERM);
    if (rc != 0)
        goto out_close_signals;

    cli__raise_nofile();
    char err[512];
    ingest_options_t io = {
        .data_dir = s->cfg->data_dir,
        .listen = s->cfg->agents,
        .window_bytes = (uint32_t)s->cfg->ingest_window,
        .budget_bytes = s->cfg->ingest_budget,
        .handshake_ms = s->cfg->ingest_handshake_ms,
        .resync = cli_resync_provider(&s->loop, s->pts, s->jnl),
    };
    /* Ingest starts from what the index knows and reads only the journal
     * after it: the journal may have retired the rest. */
    ingest_known_t *known = NULL;
    const char **retired = NULL;
    rc = cli__known_machines(s->pts, &known, &retired, &io);
    if (rc != 0) {
        fprintf(stderr, "tidemark: ingest: %s\n", tm_strerror(rc));
        s->reported = true;
        rc = UV_ENOMEM;
        goto out_close_signals;
    }
    rc = ingest_start(&s->loop, s->jnl, &io, &s->ingest, err, sizeof err);
    cli__known_free(known, io.nknown);
    tm_free(retired);
    if (rc != 0) {
        fprintf(stderr, "tidemark: ingest: %s\n", err);
        s->reported = true;
        rc = UV_EINVAL;
        goto out_close_signals;
    }
    char addr[80];
    ingest_address(s->ingest, addr, sizeof addr);
    printf("tidemark: agents on %s\n", addr);
    /* What the journal says of each machine: the operator sees at once
     * which ones are still in their initial copy. */
    size_t nm = ingest_machine_count(s->ingest);
    if (nm == 0)
        printf("  machines:    none streamed yet\n");
    for (size_t i = 0; i < nm; i++) {
        ingest_machine_info_t mi;
        if (ingest_machine_at(s->ingest, i, &mi) != 0)
            break;
        printf("  machine:     %s: %s (%u of %u disk%s copied), stream at sequence %" PRIu64 "\n", mi.name,
               ingest_machine_state_name(mi.state), mi.synced, mi.ndisks, mi.ndisks == 1 ? "" : "s",
               mi.durable_seq);
    }

    rc = tgt_exports_start(&s->loop, s->pts, s->jnl, s->cfg->nbd, &s->nbd, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "tidemark: nbd: %s\n", err);
        s->reported = true;
        rc = UV_EINVAL;
        s->nbd = NULL;
        s->stopping = true;
        cli__nbd_stopped(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out_close_loop;
    }
    tgt_exports_address(s->nbd, addr, sizeof addr);
    printf("tidemark: nbd on %s (exports MACHINE/DISK@SELECTOR)\n", addr);
    cli_failovers_restore(s->nbd, s->pts, s->cfg->data_dir);

    rc = cli_groups_start(&s->loop, s->ingest, s->pts, s->cfg, &s->cns, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "tidemark: groups: %s\n", err);
        s->reported = true;
        rc = UV_EINVAL;
        s->stopping = true;
        cli__api_stopped(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out_close_loop;
    }
    rc = cli_api_start(&s->api, &s->loop, s->jnl, s->pts, s->ingest, s->nbd, s->cns, s->cfg->data_dir, TM_VERSION,
                       s->cfg->api, addr, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "tidemark: api: %s\n", err);
        s->reported = true;
        rc = UV_EINVAL;
        /* ingest runs: stop it the way a signal would, then leave */
        s->stopping = true;
        cli__api_stopped(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out_close_loop;
    }
    s->api_up = true;
    cli_api_address(&s->api, addr, sizeof addr);
    printf("tidemark: api on %s (token in %s/%s)\n", addr, s->cfg->data_dir, TM_API_TOKEN_FILE);

    uint64_t every = s->cfg->tags_every_ns ? s->cfg->tags_every_ns : CLI_DEFAULT_TAGS_EVERY_NS;
    rc = cli_tags_start(&s->loop, s->ingest, s->pts, every, s->cfg->tags_every, s->cfg->ntags_every, &s->tags);
    if (rc != 0)
        tm_warn("tidemark: scheduled app-consistent tags are off: %s", tm_strerror(rc));
    else if (s->tags && every != UINT64_MAX)
        printf("tidemark: app-consistent tags asked for every %" PRIu64 " s on each connected machine\n",
               every / 1000000000u);

    /* Printed only once the handlers are in place, so whoever waits for this
     * line may signal us at once. */
    printf("tidemark: serving (journal open); stop with Ctrl-C or SIGTERM\n");
    fflush(stdout);

    uv_run(&s->loop, UV_RUN_DEFAULT);
    goto out_close_loop;

out_close_signals:
    uv_close((uv_handle_t *)&s->sigterm, NULL);
out_close_sigint:
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
out_close_loop:
    /* Every handle must be closed by now; a leak here is a bug, and a plain
     * assert would vanish in release builds. */
    if (uv_loop_close(&s->loop) != 0) {
        fprintf(stderr, "tidemark: bug: a libuv handle was left open at exit\n");
        abort();
    }
    return rc;
}

int cli_cmd_serve(int argc, char **argv)
{
    cli_serve_flags_t fl = {0};
    cli_config_t cfg = {0};
    cli_serve_t s = {0};
    bool help = false;
    char jdir[PATH_MAX];
    int status = CLI_EXIT_FAIL;
    int rc;

    rc = cli__serve_parse(argc, argv, &fl, &help);
    if (rc != 0)
        return rc;
    if (help) {
        cli__serve_usage(stdout);
        return CLI_EXIT_OK;
    }
    status = cli__serve_settings(&fl, &cfg);
    if (status != 0)
        goto out_free_cfg;
    status = CLI_EXIT_FAIL;

    rc = cli__ensure_dir(cfg.data_dir);
    if (rc != 0) {
        fprintf(stderr, "tidemark: cannot create the data folder %s: %s\n", cfg.data_dir, tm_strerror(rc));
        goto out_free_cfg;
    }
    int n = snprintf(jdir, sizeof jdir, "%s/%s", cfg.data_dir, CLI_JOURNAL_SUBDIR);
    if (n < 0 || (size_t)n >= sizeof jdir) {
        fprintf(stderr, "tidemark: the data folder path is too long: %s\n", cfg.data_dir);
        goto out_free_cfg;
    }
    rc = cli__ensure_dir(jdir);
    if (rc != 0) {
        fprintf(stderr, "tidemark: cannot create the journal folder %s: %s\n", jdir, tm_strerror(rc));
        goto out_free_cfg;
    }

    jnl_options_t opts = {.segment_size = cfg.segment_size};
    /* The journal wants any record to fit an empty segment; a segment below
     * the default record limit lowers the limit rather than being refused. */
    if (cfg.segment_size && cfg.segment_size - JNL_SEG_DATA_OFF - JNL_REC_OVERHEAD < JNL_DEFAULT_MAX_RECORD)
        opts.max_record = (uint32_t)(cfg.segment_size - JNL_SEG_DATA_OFF - JNL_REC_OVERHEAD);
    rc = jnl_open(jdir, &opts, &s.jnl);
    if (rc != 0) {
        fprintf(stderr,
                "tidemark: cannot open the journal in %s: %s\n"
                "tidemark: to see where and why, run: tidemark journal dump %s\n",
                jdir, tm_strerror(rc), jdir);
        goto out_free_cfg;
    }
    cli__report(cfg.data_dir, jdir, &opts, s.jnl);

    char idir[PATH_MAX + 16], bdir[PATH_MAX + 16], perr[512];
    snprintf(idir, sizeof idir, "%s/%s", cfg.data_dir, CLI_INDEX_SUBDIR);
    snprintf(bdir, sizeof bdir, "%s/%s", cfg.data_dir, CLI_BASE_SUBDIR);
    pts_options_t popts = {.cadence_ms = cfg.points_cadence_ms,
                           .base_dir = bdir,
                           .retention_ns = cfg.retention_ns,
                           .per_machine = cfg.retention,
                           .nper_machine = cfg.nretention,
                           /* ingest takes machines' state from the index */
                           .retire_journal = true};
    rc = pts_open(idir, s.jnl, &popts, &s.pts, perr, sizeof perr);
    if (rc != 0) {
        fprintf(stderr, "tidemark: cannot open the index in %s: %s\n", idir, perr);
        jnl_destroy(s.jnl);
        goto out_free_cfg;
    }
    pts_stats_t pst;
    pts_get_stats(s.pts, &pst);
    printf("  index:       %s (processed up to journal record %" PRIu64 ", points every %u ms)\n", idir,
           pst.next_lsn ? pst.next_lsn - 1 : 0, cfg.points_cadence_ms ? cfg.points_cadence_ms : PTS_DEFAULT_CADENCE_MS);

    s.cfg = &cfg;
    rc = cli__serve_loop(&s);
    if (rc != 0 && !s.reported)
        fprintf(stderr, "tidemark: event loop: %s\n", uv_strerror(rc));
    else if (rc == 0)
        status = CLI_EXIT_OK;
    pts_close(s.pts); /* when the loop failed before the stop sequence */
    if (s.jnl) {
        /* The loop failed before a signal closed the journal. */
        jnl_close(s.jnl);
        jnl_destroy(s.jnl);
    }
    if (status == CLI_EXIT_OK) {
        printf("tidemark: stopped (journal closed)\n");
        fflush(stdout);
    }

out_free_cfg:
    cli_config_free(&cfg);
    return status;
}
