/*
 * `tidemark points MACHINE [--kind crash|app] [--since TIME] [--until TIME]
 *                  [--limit N] [--json] [--api ADDR] [--data DIR] [--config FILE]`
 *
 * Lists a machine's recovery points, newest first (GET
 * /v1/machines/{m}/points): id, time, kind and tag, as a table, or the
 * appliance's JSON with --json. The kind and the limit are checked here, so a
 * typo is a usage error before any request; the times are the appliance's
 * to judge (RFC 3339, docs/api.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/table.h"

/* The API's bound on ?limit= (docs/api.md). */
#define CLI_POINTS_MAX_LIMIT 100000

typedef struct cli_points_args {
    const char *machine;
    const char *kind;
    const char *since;
    const char *until;
    const char *limit;
    bool json;
} cli_points_args_t;

static void cli__points_usage(FILE *out)
{
    fputs("usage: tidemark points MACHINE [--kind crash|app] [--since TIME] [--until TIME]\n"
          "                       [--limit N] [--json] [--api ADDR] [--data DIR]\n"
          "                       [--config FILE]\n"
          "  list MACHINE's recovery points, newest first\n"
          "  --kind K          only crash (on the cadence) or app (app-consistent) points\n"
          "  --since TIME      only points at or after TIME (RFC 3339)\n"
          "  --until TIME      only points at or before TIME (2026-11-27T10:00:00Z)\n"
          "  --limit N         the newest N that match (1 to 100000; default 1000)\n"
          "  --json            print the appliance's JSON answer\n" CLI_API_FLAGS_USAGE,
          out);
}

/* 0, -1 for help, or CLI_EXIT_USAGE (said why). */
static int cli__points_parse(int argc, char **argv, cli_points_args_t *a, cli_api_flags_t *fl)
{
    static const char *const names[] = {"--kind", "--since", "--until", "--limit"};
    const char **slots[] = {&a->kind, &a->since, &a->until, &a->limit};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return -1;
        if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, "points");
        for (size_t k = 0; k < sizeof names / sizeof names[0] && m == 0; k++) {
            m = cli_opt_value(argc, argv, &i, names[k], slots[k]);
            if (m < 0)
                fprintf(stderr, "tidemark: points: %s needs a value\n", names[k]);
        }
        if (m < 0)
            return CLI_EXIT_USAGE;
        if (m > 0)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "tidemark: points: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (a->machine) {
            fprintf(stderr, "tidemark: points: unexpected argument '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        a->machine = argv[i];
    }
    if (!a->machine) {
        fprintf(stderr, "tidemark: points: which machine? (a MACHINE is needed)\n");
        return CLI_EXIT_USAGE;
    }
    if (a->kind && strcmp(a->kind, "crash") != 0 && strcmp(a->kind, "app") != 0) {
        fprintf(stderr, "tidemark: points: --kind %s is not a kind (crash or app)\n", a->kind);
        return CLI_EXIT_USAGE;
    }
    if (a->limit) {
        char *end;
        errno = 0;
        long n = strtol(a->limit, &end, 10);
        if (a->limit[0] < '0' || a->limit[0] > '9' || *end || errno || n < 1 || n > CLI_POINTS_MAX_LIMIT) {
            fprintf(stderr, "tidemark: points: --limit %s is not a count from 1 to %d\n", a->limit,
                    CLI_POINTS_MAX_LIMIT);
            return CLI_EXIT_USAGE;
        }
    }
    return 0;
}

/* "/v1/machines/M/points?kind=..&since=.." with each value escaped; tm_free
 * it. NULL on ENOMEM. */
static char *cli__points_path(const cli_points_args_t *a)
{
    const char *keys[] = {"kind", "since", "until", "limit"};
    const char *values[] = {a->kind, a->since, a->until, a->limit};
    char *esc[5] = {0};
    char *path = NULL;

    esc[0] = cli_api_escape(a->machine);
    if (!esc[0])
        goto out_free;
    size_t len = strlen("/v1/machines//points") + strlen(esc[0]) + 1;
    for (size_t k = 0; k < 4; k++) {
        if (!values[k])
            continue;
        esc[k + 1] = cli_api_escape(values[k]);
        if (!esc[k + 1])
            goto out_free;
        len += 1 + strlen(keys[k]) + 1 + strlen(esc[k + 1]);
    }
    path = tm_malloc(len);
    if (!path)
        goto out_free;
    size_t n = (size_t)snprintf(path, len, "/v1/machines/%s/points", esc[0]);
    char sep = '?';
    for (size_t k = 0; k < 4; k++) {
        if (!esc[k + 1])
            continue;
        n += (size_t)snprintf(path + n, len - n, "%c%s=%s", sep, keys[k], esc[k + 1]);
        sep = '&';
    }

out_free:
    for (size_t k = 0; k < 5; k++)
        tm_free(esc[k]);
    return path;
}

static int cli__points_print(const json_t *answer, const cli_points_args_t *a)
{
    static const char *const headers[] = {"ID", "TIME", "KIND", "TAG"};
    const json_t *points = json_object_get(answer, "points");

    if (json_array_size(points) == 0) {
        if (a->kind || a->since || a->until)
            printf("no points of %s match\n", a->machine);
        else
            printf("%s has no points yet\n", a->machine);
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    cli_table_t *t = cli_table_new(4, headers);
    if (!t)
        goto out_nomem;
    cli_table_align_right(t, 0);
    size_t i;
    const json_t *p;
    json_array_foreach(points, i, p) {
        char when[64];
        cli_table_time(when, sizeof when, json_string_value(json_object_get(p, "time")));
        const char *cells[] = {json_string_value(json_object_get(p, "id")), when,
                               json_string_value(json_object_get(p, "kind")),
                               json_string_value(json_object_get(p, "tag"))};
        if (cli_table_add(t, cells) != 0)
            goto out_nomem;
    }
    return cli_table_finish(t, true);
out_nomem:
    return cli_table_finish(t, false);
}

int cli_cmd_points(int argc, char **argv)
{
    cli_points_args_t a = {0};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *answer = NULL;

    int status = cli__points_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__points_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (status != 0) {
        cli__points_usage(stderr);
        return status;
    }

    status = cli_api_open(&fl, &api);
    if (status != 0)
        return status;
    char *path = cli__points_path(&a);
    if (!path) {
        fprintf(stderr, "tidemark: out of memory\n");
        status = CLI_EXIT_FAIL;
        goto out_close;
    }
    status = cli_api_get(api, path, &answer);
    tm_free(path);
    if (status != 0)
        goto out_close;
    if (a.json)
        status = cli_api_print_json(answer, stdout, false) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    else
        status = cli__points_print(answer, &a);

out_close:
    json_decref(answer);
    cli_api_close(api);
    return status;
}
