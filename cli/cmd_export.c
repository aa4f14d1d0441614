/*
 * `tidemark export MACHINE --point SELECTOR [--json] [--api ADDR] [--data DIR] [--config FILE]`
 *
 * The NBD exports to connect to for each disk of MACHINE at a point: the
 * selector is resolved first (GET /v1/machines/{m}/points/{selector}; for
 * `latest` that processes everything received and cuts the point), and the
 * names use the point's id, so every disk and every connection sees the
 * same point even as newer ones are cut. An @TIME selector resolves to a
 * position that is not a catalogued point: its names keep the @TIME.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"

typedef struct cli_export_args {
    const char *machine;
    const char *point;
    bool json;
} cli_export_args_t;

static void cli__export_usage(FILE *out)
{
    fputs("usage: tidemark export MACHINE --point SELECTOR [--json] [--api ADDR] [--data DIR]\n"
          "                       [--config FILE]\n"
          "  the NBD exports (read-only) of each disk of MACHINE at a point, as URIs\n"
          "  for qemu-img, qemu-io, nbdcopy or a VM\n"
          "  --point SELECTOR  latest, latest-processed, latest-app, a point id, or @TIME\n"
          "  --json            {\"machine\", \"point\", \"exports\": [{\"disk\", \"name\", \"uri\"}]}\n" CLI_API_FLAGS_USAGE,
          out);
}

/* 0, -1 for help, or CLI_EXIT_USAGE (said why). */
static int cli__export_parse(int argc, char **argv, cli_export_args_t *a, cli_api_flags_t *fl)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return -1;
        if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, "export");
        if (m == 0)
            m = cli_opt_value(argc, argv, &i, "--point", &a->point);
        if (m < 0) {
            fprintf(stderr, "tidemark: export: %s needs a value\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (m > 0)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "tidemark: export: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (a->machine) {
            fprintf(stderr, "tidemark: export: unexpected argument '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        a->machine = argv[i];
    }
    if (!a->machine || !a->point) {
        fprintf(stderr, "tidemark: export: %s is needed\n", a->machine ? "--point SELECTOR" : "a MACHINE");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* The machine's object in GET /v1/machines, or NULL. */
static json_t *cli__find_machine(json_t *machines, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(machines, "machines"), i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && strcmp(n, name) == 0)
            return m;
    }
    return NULL;
}

int cli_cmd_export(int argc, char **argv)
{
    cli_export_args_t a = {0};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *health = NULL, *resolved = NULL, *machines = NULL, *out = NULL;
    char *path = NULL, *em = NULL, *es = NULL;

    int status = cli__export_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__export_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (status != 0) {
        cli__export_usage(stderr);
        return status;
    }
    status = cli_api_open(&fl, &api);
    if (status != 0)
        return status;
    status = CLI_EXIT_FAIL;
    em = cli_api_escape(a.machine);
    es = cli_api_escape(a.point);
    size_t plen = (em ? strlen(em) : 0) + (es ? strlen(es) : 0) + 32;
    path = tm_malloc(plen);
    if (!em || !es || !path) {
        fprintf(stderr, "tidemark: out of memory\n");
        goto out;
    }
    if ((status = cli_api_get(api, "/v1/health", &health)) != 0)
        goto out;
    const char *nbd = json_string_value(json_object_get(health, "nbd"));
    if (!nbd) {
        fprintf(stderr, "tidemark: export: the appliance at %s serves no NBD exports\n", cli_api_addr(api));
        status = CLI_EXIT_FAIL;
        goto out;
    }
    snprintf(path, plen, "/v1/machines/%s/points/%s", em, es);
    if ((status = cli_api_get(api, path, &resolved)) != 0)
        goto out;
    if ((status = cli_api_get(api, "/v1/machines", &machines)) != 0)
        goto out;
    json_t *m = cli__find_machine(machines, a.machine);
    json_t *point = json_object_get(resolved, "point");
    const char *id = json_string_value(json_object_get(point, "id"));
    /* a catalogued point by its id; an @TIME position as it was asked */
    const char *at = id ? id : a.point;
    out = json_pack("{s:s,s:O,s:[]}", "machine", a.machine, "point", point, "exports");
    if (!m || !out) {
        fprintf(stderr, "tidemark: export: %s\n", m ? "out of memory" : "the appliance no longer lists the machine");
        status = CLI_EXIT_FAIL;
        goto out;
    }
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(m, "disks"), i, d) {
        const char *disk = json_string_value(json_object_get(d, "name"));
        char name[512], uri[1024];
        snprintf(name, sizeof name, "%s/%s@%s", a.machine, disk ? disk : "?", at);
        char *eat = cli_api_escape(at);
        snprintf(uri, sizeof uri, "nbd://%s/%s/%s@%s", nbd, a.machine, disk ? disk : "?", eat ? eat : at);
        tm_free(eat);
        json_array_append_new(json_object_get(out, "exports"),
                              json_pack("{s:s,s:s,s:s}", "disk", disk ? disk : "?", "name", name, "uri", uri));
        if (!a.json)
            printf("%s\n", uri);
    }
    if (a.json)
        cli_api_print_json(out, stdout, false);
    else
        fprintf(stderr, "tidemark: %s at point %s (%s, %s); read-only\n", a.machine, at,
                json_string_value(json_object_get(point, "kind")), json_string_value(json_object_get(point, "time")));
    status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(health);
    json_decref(resolved);
    json_decref(machines);
    json_decref(out);
    tm_free(path);
    tm_free(em);
    tm_free(es);
    cli_api_close(api);
    return status;
}
