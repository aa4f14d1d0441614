/*
 * The client side of the orchestrator API (docs/api.md), for the commands
 * that talk to a running `tidemark serve` (status, points, materialize).
 *
 * One place decides where the appliance is and how to prove who we are:
 *   address  --api ADDR, else the `api` key of --config FILE, else
 *            CLI_DEFAULT_API;
 *   token    DATA/api.token, where DATA is --data DIR, else the `data` key of
 *            the config file, else CLI_DEFAULT_DATA.
 * Every failure (no appliance listening, no token, an API error object, an
 * answer that is not JSON) becomes one line on stderr, and the caller gets
 * the exit status to return (cli/cmd.h).
 */
#ifndef TM_CLI_API_CLIENT_H
#define TM_CLI_API_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "cli/config.h"

/* The file, in the data folder, that holds the API's bearer token. */
#define CLI_API_TOKEN_FILE "api.token"

/* How long a connection may take, and a whole request. `latest` may make the
 * appliance process a backlog before it answers, hence the generous bound. */
#define CLI_API_CONNECT_TIMEOUT_MS 5000L
#define CLI_API_REQUEST_TIMEOUT_MS 60000L

/* Largest response body accepted: 100000 points (the API's limit) take
 * about 15 MB; anything far beyond that is not an answer of ours. */
#define CLI_API_MAX_BODY (64u << 20)

/* The flags every API command takes; NULL when not given. */
typedef struct cli_api_flags {
    const char *api;
    const char *config;
    const char *data;
} cli_api_flags_t;

/* The lines of usage text that describe cli_api_flags_t, for the commands'
 * own usage texts. */
#define CLI_API_FLAGS_USAGE                                                                   \
    "  --api ADDR        the appliance's API, HOST:PORT or [V6]:PORT\n"                            \
    "                    (default " CLI_DEFAULT_API ")\n"                                          \
    "  --data DIR        the appliance's data folder, which holds " CLI_API_TOKEN_FILE "\n"        \
    "                    (default " CLI_DEFAULT_DATA ")\n"                                         \
    "  --config FILE     settings file (its keys api and data)\n"

typedef struct cli_api cli_api_t;

/*
 * Matches `--name VALUE` or `--name=VALUE` at argv[*i] and advances *i past a
 * separate value. Returns 1 matched, 0 not this option, -1 the value is
 * missing or empty.
 */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/*
 * Matches one of --api, --config, --data at argv[*i] into *fl. Returns 1
 * consumed, 0 not one of them, -1 its value is missing (said on stderr as
 * "tidemark: CMD: --x needs a value").
 */
int cli_api_flag(int argc, char **argv, int *i, cli_api_flags_t *fl, const char *cmd);

/*
 * Resolve the address and read the token. 0 with *out set, or the exit
 * status to return (the reason already printed).
 */
int cli_api_open(const cli_api_flags_t *fl, cli_api_t **out);

void cli_api_close(cli_api_t *api);

/* The address as given ("127.0.0.1:7780"), for messages. */
const char *cli_api_addr(const cli_api_t *api);

/*
 * While *flag is nonzero (set by a signal handler), requests in flight are
 * abandoned and return CLI_EXIT_INTERRUPTED without a message. NULL: never.
 */
void cli_api_set_cancel(cli_api_t *api, volatile sig_atomic_t *flag);

/*
 * GET or POST path (starting with "/v1/", segments already escaped); POST
 * sends body as JSON. On a 2xx answer returns 0 with *out the parsed
 * response object (release with json_decref). Otherwise returns the exit
 * status to return, the reason printed: CLI_EXIT_USAGE for an API error of
 * code bad-selector (the user's own argument), CLI_EXIT_INTERRUPTED when
 * cancelled, CLI_EXIT_FAIL for anything else.
 */
int cli_api_get(cli_api_t *api, const char *path, json_t **out);
int cli_api_post(cli_api_t *api, const char *path, const json_t *body, json_t **out);
/* The same with any method ("PATCH", "DELETE"); body may be NULL. */
int cli_api_send(cli_api_t *api, const char *method, const char *path, const json_t *body, json_t **out);

/* s escaped for one path segment or a query value; tm_free it. NULL on
 * ENOMEM. */
char *cli_api_escape(const char *s);

/*
 * Print an API error object {"code", "message"} as one line:
 * "tidemark: [WHAT: ]MESSAGE (CODE)". what may be NULL.
 */
void cli_api_print_error(const json_t *error, const char *what);

/*
 * Print a JSON value on out, followed by a newline: indented by 2, or on
 * one line when compact; keys in the server's order. 0 or -EIO / -ENOMEM.
 */
int cli_api_print_json(const json_t *v, FILE *out, bool compact);

#endif
