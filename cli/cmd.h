/*
 * The subcommands of the `tidemark` binary. Each takes the arguments after
 * its own name (argv[0] is the subcommand's name) and returns the process
 * exit status: 0 done, 1 a runtime failure, 2 a usage or config error.
 */
#ifndef TM_CLI_CMD_H
#define TM_CLI_CMD_H

#include <stdio.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

int cli_cmd_serve(int argc, char **argv);
int cli_cmd_journal(int argc, char **argv);
int cli_cmd_machine(int argc, char **argv);
int cli_cmd_agent(int argc, char **argv);

/* The top-level usage text (main.c). */
void cli_usage(FILE *out);

#endif
