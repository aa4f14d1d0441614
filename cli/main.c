/*
 * `tidemark`: one binary, one subcommand per job. This file only dispatches;
 * each subcommand lives in its own cmd_*.c. Exit status: 0 done, 1 a runtime
 * failure, 2 a usage or config error. The environment variable TIDEMARK_LOG
 * (debug, info, warn, error) sets the lowest level logged; default info.
 *
 * The other commands of the design (failover, export, commit, jobs, ...)
 * come with the stages that implement them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli/cmd.h"
#include "cli/config.h"

#ifndef TM_VERSION
#error "TM_VERSION must be defined by the build (the CMake project version)"
#endif

void cli_usage(FILE *out)
{
    fputs("usage: tidemark <command> [options]\n"
          "\n"
          "commands:\n"
          "  serve [--data DIR] [--config FILE] [--segment-size BYTES] [--agents ADDR]\n"
          "                          open and recover the journal, take agents' streams on\n"
          "                          ADDR, run until SIGINT or SIGTERM\n"
          "  journal dump DIR [-v|--verbose]\n"
          "                          print the journal's segment headers (and records with\n"
          "                          -v); DIR is the data folder or the journal folder\n"
          "  machine add NAME [--data DIR] [--config FILE]\n"
          "                          register a machine; print its agent secret once\n"
          "  agent replay|tap ...    the agent of a protected machine: stream a synthetic\n"
          "                          workload, or tap local disk images served over NBD\n"
          "                          (tidemark agent help)\n"
          "  status [--json]         the appliance's machines: state, lag, RPO, points\n"
          "  points MACHINE [--kind K] [--since T] [--until T] [--limit N] [--json]\n"
          "                          list a machine's recovery points, newest first\n"
          "  export MACHINE --point SELECTOR [--json]\n"
          "                          the NBD exports of the machine's disks at a point\n"
          "  failover MACHINE... --point SELECTOR [--shutdown] [--out DIR] | --planned | --test\n"
          "                          fail machines over: their disks served at once over NBD\n"
          "  change-point MACHINE... --point SELECTOR\n"
          "                          serve failed-over disks at another point\n"
          "  commit MACHINE...       make a failover final: points deleted, replication stops\n"
          "  jobs [ID] [--cancel] [--json]\n"
          "                          the appliance's jobs; --cancel a failover in progress\n"
          "  groups [list|show G|add G MACHINE...|set G|delete G|round G] [--json]\n"
          "                          replication groups: list, make, change, delete, run a round\n"
          "  materialize MACHINE --point SELECTOR --out DIR [--json]\n"
          "                          write each disk's raw image at a point, with progress\n"
          "  (status, points, export, failover, change-point, commit, jobs, groups and materialize ask a running `tidemark serve` at --api ADDR,\n"
          "  default " CLI_DEFAULT_API ", with the token in DATA/api.token: see\n"
          "  tidemark COMMAND --help)\n"
          "  version                 print the version\n"
          "  help                    print this text\n",
          out);
}

/* TIDEMARK_LOG=debug|info|warn|error; anything else is said once and ignored. */
static void cli__log_level_from_env(void)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const tm_log_level_t levels[] = {TM_LOG_DEBUG, TM_LOG_INFO, TM_LOG_WARN, TM_LOG_ERROR};
    const char *v = getenv("TIDEMARK_LOG");
    if (!v || !*v)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(v, names[i]) == 0) {
            tm_log_set_level(levels[i]);
            return;
        }
    }
    fprintf(stderr, "tidemark: TIDEMARK_LOG=%s is not one of debug, info, warn, error; ignored\n", v);
}

int main(int argc, char **argv)
{
    /* A peer that hangs up while a reply is being written must cost that
     * connection (EPIPE), never the process. */
    signal(SIGPIPE, SIG_IGN);
    cli__log_level_from_env();
    if (argc < 2) {
        cli_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];

    if (strcmp(cmd, "serve") == 0)
        return cli_cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "journal") == 0)
        return cli_cmd_journal(argc - 1, argv + 1);
    if (strcmp(cmd, "machine") == 0)
        return cli_cmd_machine(argc - 1, argv + 1);
    if (strcmp(cmd, "agent") == 0)
        return cli_cmd_agent(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cli_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "points") == 0)
        return cli_cmd_points(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0)
        return cli_cmd_export(argc - 1, argv + 1);
    if (strcmp(cmd, "jobs") == 0)
        return cli_cmd_jobs(argc - 1, argv + 1);
    if (strcmp(cmd, "groups") == 0)
        return cli_cmd_groups(argc - 1, argv + 1);
    if (strcmp(cmd, "failover") == 0)
        return cli_cmd_failover(argc - 1, argv + 1);
    if (strcmp(cmd, "change-point") == 0)
        return cli_cmd_change_point(argc - 1, argv + 1);
    if (strcmp(cmd, "commit") == 0)
        return cli_cmd_commit(argc - 1, argv + 1);
    if (strcmp(cmd, "materialize") == 0)
        return cli_cmd_materialize(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tidemark %s\n", TM_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        cli_usage(stdout);
        return CLI_EXIT_OK;
    }

    fprintf(stderr, "tidemark: unknown command '%s'\n\n", cmd);
    cli_usage(stderr);
    return CLI_EXIT_USAGE;
}
