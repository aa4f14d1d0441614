/*
 * `tidemark`: one binary, one subcommand per job. This file only dispatches;
 * each subcommand lives in its own cmd_*.c. Exit status: 0 done, 1 a runtime
 * failure, 2 a usage or config error.
 *
 * The other commands of the design (status, points, failover, export,
 * materialize, agent, machine, ...) come with the stages that implement them.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmd.h"

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
          "  version                 print the version\n"
          "  help                    print this text\n",
          out);
}

int main(int argc, char **argv)
{
    /* A peer that hangs up while a reply is being written must cost that
     * connection (EPIPE), never the process. */
    signal(SIGPIPE, SIG_IGN);
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
