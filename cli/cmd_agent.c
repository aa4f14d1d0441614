/*
 * `tidemark agent replay|tap`: the agent of a protected machine. The work is
 * in agent/; this file reads the command line.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/addr.h"
#include "agent/client.h"
#include "agent/replay.h"
#include "agent/tap.h"
#include "base/err.h"
#include "base/mem.h"
#include "cli/cmd.h"

static void agent_usage(FILE *out)
{
    fputs("usage: tidemark agent replay --server ADDR --machine NAME --secret-file F --workload SPEC\n"
          "                             [--queue BYTES] [TAG OPTIONS]\n"
          "       tidemark agent tap    --server ADDR --machine NAME --secret-file F\n"
          "                             --disk NAME=FILE [--disk NAME=FILE ...] --listen ADDR [--queue BYTES]\n"
          "                             [--copy-rate BYTES] [TAG OPTIONS]\n"
          "  TAG OPTIONS: [--pre-script CMD] [--post-script CMD] [--script-timeout SECONDS]\n"
          "\n"
          "  replay  stream a seeded synthetic workload; SPEC is key=value,... of\n"
          "          disks=N size=BYTES rate=BYTES/s bs=4k:70,64k:30 locality=0..1\n"
          "          compress=0..1 duration=SECONDS|count=N seed=S tags=N\n"
          "  tap     serve each raw image FILE over NBD as export NAME on ADDR and stream\n"
          "          every write made through it; a disk the appliance has no copy of yet\n"
          "          is sent whole first (--copy-rate: at most BYTES/s read for that, K/M/G)\n"
          "  An app-consistent tag the appliance asks for runs the pre-script (/bin/sh -c\n"
          "  CMD; TIDEMARK_TAG_NAME and TIDEMARK_TAG_ID set), holds new writes until\n"
          "  the tag is in the stream, runs the post-script, then lets them go on; a\n"
          "  failed pre-script means no app tag. Each script is killed after SECONDS (60).\n"
          "  The same scripts run for the app-consistent rounds of a replication group.\n"
          "  ADDR is HOST:PORT or [IPv6]:PORT; the secret file holds the 64 hex\n"
          "  characters `tidemark machine add NAME` printed.\n",
          out);
}

/* "--opt VALUE" or "--opt=VALUE": the value, advancing *i; NULL if missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "tidemark agent: %s needs a value\n", name);
        return "";
    }
    return argv[++*i];
}

static int parse_queue(const char *v, size_t *out)
{
    char *end;
    unsigned long long q = strtoull(v, &end, 10);
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'm' || *end == 'M')
        shift = 20, end++;
    else if (*end == 'g' || *end == 'G')
        shift = 30, end++;
    if (end == v || *end || q == 0 || q > (1ull << 40) >> shift)
        return -1;
    *out = (size_t)(q << shift);
    return 0;
}

int cli_cmd_agent(int argc, char **argv)
{
    if (argc < 2) {
        agent_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "help") == 0 || strcmp(mode, "--help") == 0 || strcmp(mode, "-h") == 0) {
        agent_usage(stdout);
        return CLI_EXIT_OK;
    }
    bool replay = strcmp(mode, "replay") == 0, tap = strcmp(mode, "tap") == 0;
    if (!replay && !tap) {
        fprintf(stderr, "tidemark agent: unknown mode '%s' (replay or tap)\n\n", mode);
        agent_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    const char *server = NULL, *machine = NULL, *secret_file = NULL, *workload = NULL, *listen = NULL;
    size_t queue = 0, copy_rate = 0;
    const char *pre_script = NULL, *post_script = NULL;
    unsigned script_timeout_ms = 0;
    agent_tap_disk_t disks[WIRE_MAX_DISKS];
    unsigned ndisks = 0;
    for (int i = 2; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--server")))
            server = v;
        else if ((v = opt_value(argc, argv, &i, "--machine")))
            machine = v;
        else if ((v = opt_value(argc, argv, &i, "--secret-file")))
            secret_file = v;
        else if (replay && (v = opt_value(argc, argv, &i, "--workload")))
            workload = v;
        else if (tap && (v = opt_value(argc, argv, &i, "--listen")))
            listen = v;
        else if ((v = opt_value(argc, argv, &i, "--queue"))) {
            if (parse_queue(v, &queue) != 0) {
                fprintf(stderr, "tidemark agent: --queue %s: a size in bytes (K/M/G suffixes) above 0\n", v);
                return CLI_EXIT_USAGE;
            }
        } else if (tap && (v = opt_value(argc, argv, &i, "--copy-rate"))) {
            if (parse_queue(v, &copy_rate) != 0) {
                fprintf(stderr, "tidemark agent: --copy-rate %s: bytes per second (K/M/G suffixes) above 0\n", v);
                return CLI_EXIT_USAGE;
            }
        } else if ((v = opt_value(argc, argv, &i, "--pre-script"))) {
            pre_script = v;
        } else if ((v = opt_value(argc, argv, &i, "--post-script"))) {
            post_script = v;
        } else if ((v = opt_value(argc, argv, &i, "--script-timeout"))) {
            char *end;
            double secs = strtod(v, &end);
            if (end == v || *end || !(secs >= 0.001 && secs <= 86400)) {
                fprintf(stderr, "tidemark agent: --script-timeout %s: seconds, from 0.001 to 86400\n", v);
                return CLI_EXIT_USAGE;
            }
            script_timeout_ms = (unsigned)(secs * 1000.0 + 0.5);
        } else if (tap && (v = opt_value(argc, argv, &i, "--disk"))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || (size_t)(eq - v) > WIRE_MAX_NAME) {
                fprintf(stderr, "tidemark agent: --disk %s: expected NAME=FILE\n", v);
                return CLI_EXIT_USAGE;
            }
            if (ndisks == WIRE_MAX_DISKS) {
                fprintf(stderr, "tidemark agent: at most %u disks\n", WIRE_MAX_DISKS);
                return CLI_EXIT_USAGE;
            }
            memcpy(disks[ndisks].name, v, (size_t)(eq - v));
            disks[ndisks].name[eq - v] = '\0';
            if (!wire_name_ok(disks[ndisks].name)) {
                fprintf(stderr, "tidemark agent: disk name '%s': 1-63 of A-Z a-z 0-9 . _ -, not starting with . "
                        "or -\n", disks[ndisks].name);
                return CLI_EXIT_USAGE;
            }
            disks[ndisks].path = eq + 1;
            ndisks++;
        } else {
            fprintf(stderr, "tidemark agent %s: unknown option '%s'\n\n", mode, argv[i]);
            agent_usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (v && !*v)
            return CLI_EXIT_USAGE;
    }
    const char *missing = !server ? "--server" : !machine ? "--machine" : !secret_file ? "--secret-file"
                        : replay && !workload ? "--workload" : tap && !listen ? "--listen"
                        : tap && ndisks == 0 ? "--disk" : NULL;
    if (missing) {
        fprintf(stderr, "tidemark agent %s: %s is required\n\n", mode, missing);
        agent_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!wire_name_ok(machine)) {
        fprintf(stderr, "tidemark agent: machine name '%s': 1-63 of A-Z a-z 0-9 . _ -, not starting with . or -\n",
                machine);
        return CLI_EXIT_USAGE;
    }
    struct sockaddr_storage ss;
    if (tm_addr_parse(server, &ss) != 0) {
        fprintf(stderr, "tidemark agent: --server %s: expected HOST:PORT or [IPv6]:PORT with a numeric host\n",
                server);
        return CLI_EXIT_USAGE;
    }
    uint8_t secret[AGENT_SECRET_LEN];
    char err[512];
    if (agent_secret_read(secret_file, secret, err, sizeof err) != 0) {
        fprintf(stderr, "tidemark agent: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    /* A peer that goes away while we write must not end the agent. */
    signal(SIGPIPE, SIG_IGN);

    int code;
    if (replay) {
        agent_replay_opts_t ro = {.server = server, .machine = machine, .secret = secret, .queue_bytes = queue,
                                  .pre_script = pre_script, .post_script = post_script,
                                  .script_timeout_ms = script_timeout_ms};
        if (agent_workload_parse(workload, &ro.workload, err, sizeof err) != 0) {
            fprintf(stderr, "tidemark agent replay: %s\n", err);
            code = CLI_EXIT_USAGE;
        } else {
            code = agent_replay_run(&ro);
        }
    } else {
        agent_tap_opts_t to = {.server = server, .machine = machine, .secret = secret, .listen = listen,
                               .disks = disks, .ndisks = ndisks, .queue_bytes = queue,
                               .copy_rate = copy_rate, .pre_script = pre_script,
                               .post_script = post_script, .script_timeout_ms = script_timeout_ms};
        code = agent_tap_run(&to);
    }
    memset(secret, 0, sizeof secret);
    return code;
}
