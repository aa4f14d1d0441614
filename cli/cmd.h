/*
 * The subcommands of the `tidemark` binary. Each takes the arguments after
 * its own name (argv[0] is the subcommand's name) and returns the process
 * exit status: 0 done, 1 a runtime failure, 2 a usage or config error, 130
 * (the shell's 128 + SIGINT) when Ctrl-C stopped a client command that was
 * waiting on the appliance.
 */
#ifndef TM_CLI_CMD_H
#define TM_CLI_CMD_H

#include <stdio.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 130

int cli_cmd_serve(int argc, char **argv);
int cli_cmd_journal(int argc, char **argv);
int cli_cmd_machine(int argc, char **argv);
int cli_cmd_agent(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_points(int argc, char **argv);
int cli_cmd_export(int argc, char **argv);
int cli_cmd_jobs(int argc, char **argv);
int cli_cmd_groups(int argc, char **argv);
int cli_cmd_failover(int argc, char **argv);
int cli_cmd_change_point(int argc, char **argv);
int cli_cmd_commit(int argc, char **argv);
int cli_cmd_materialize(int argc, char **argv);

/* The top-level usage text (main.c). */
void cli_usage(FILE *out);

#endif
