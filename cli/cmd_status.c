/*
 * `tidemark status [--json] [--api ADDR] [--data DIR] [--config FILE]`
 *
 * Asks a running appliance (GET /v1/health and /v1/machines) and prints its
 * machines as a table: state, agent, disks, the stream positions received
 * and processed, the processing lag, the RPO and the newest point. --json
 * prints the answer of /v1/machines as the appliance gave it (indented).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/table.h"

static void cli__status_usage(FILE *out)
{
    fputs("usage: tidemark status [--json] [--api ADDR] [--data DIR] [--config FILE]\n"
          "  the appliance's machines: state, disks, stream positions, lag, RPO and\n"
          "  newest point\n"
          "  --json            print the appliance's JSON answer (GET /v1/machines)\n" CLI_API_FLAGS_USAGE,
          out);
}

/* The text of the cells of one machine that are not strings of the answer. */
typedef struct cli_status_row {
    char disks[48];
    char received[24];
    char processed[24];
    char lag[64];
    char rpo[32];
    char latest[160];
} cli_status_row_t;

static void cli__status_cells(const json_t *m, cli_status_row_t *r)
{
    char size[32], when[64], bytes[32];

    const json_t *disks = json_object_get(m, "disks");
    unsigned long long total = 0;
    size_t i;
    const json_t *d;
    json_array_foreach(disks, i, d)
        total += (unsigned long long)json_integer_value(json_object_get(d, "size"));
    cli_table_bytes(size, sizeof size, total);
    if (json_array_size(disks) > 0)
        snprintf(r->disks, sizeof r->disks, "%zu (%s)", json_array_size(disks), size);
    else
        snprintf(r->disks, sizeof r->disks, "0");

    snprintf(r->received, sizeof r->received, "%lld",
             (long long)json_integer_value(json_object_get(m, "received_seq")));
    snprintf(r->processed, sizeof r->processed, "%lld",
             (long long)json_integer_value(json_object_get(m, "processed_seq")));

    cli_table_bytes(bytes, sizeof bytes, (unsigned long long)json_integer_value(json_object_get(m, "lag_bytes")));
    snprintf(r->lag, sizeof r->lag, "%s, %.1f s", bytes, json_number_value(json_object_get(m, "lag_seconds")));

    const json_t *rpo = json_object_get(m, "rpo_seconds");
    if (json_is_number(rpo))
        snprintf(r->rpo, sizeof r->rpo, "%.1f s", json_number_value(rpo));
    else
        snprintf(r->rpo, sizeof r->rpo, "-");

    const json_t *p = json_object_get(m, "latest_point");
    if (json_is_object(p)) {
        const char *tag = json_string_value(json_object_get(p, "tag"));
        const char *kind = json_string_value(json_object_get(p, "kind"));
        cli_table_time(when, sizeof when, json_string_value(json_object_get(p, "time")));
        snprintf(r->latest, sizeof r->latest, "%s %s%s%s", when, kind ? kind : "?", tag ? " " : "", tag ? tag : "");
    } else {
        snprintf(r->latest, sizeof r->latest, "-");
    }
}

static int cli__status_print(const json_t *health, const json_t *machines, const char *addr)
{
    static const char *const headers[] = {"MACHINE",   "STATE", "AGENT", "DISKS",       "RECEIVED",
                                          "PROCESSED", "LAG",   "RPO",   "LATEST POINT"};
    const char *id = json_string_value(json_object_get(machines, "appliance"));
    const char *version = json_string_value(json_object_get(health, "version"));
    printf("appliance %s  version %s  api %s\n", id ? id : "?", version ? version : "?", addr);

    const json_t *list = json_object_get(machines, "machines");
    if (json_array_size(list) == 0) {
        printf("no machines registered (tidemark machine add NAME)\n");
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    putchar('\n');

    cli_table_t *t = cli_table_new(sizeof headers / sizeof headers[0], headers);
    if (!t)
        goto out_nomem;
    cli_table_align_right(t, 4);
    cli_table_align_right(t, 5);
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m) {
        cli_status_row_t r;
        cli__status_cells(m, &r);
        const json_t *conn = json_object_get(m, "connected");
        /* a failover says more than the replication state */
        const char *fo = json_string_value(json_object_get(json_object_get(m, "failover"), "state"));
        const char *cells[] = {json_string_value(json_object_get(m, "name")),
                               fo ? fo : json_string_value(json_object_get(m, "state")),
                               json_is_true(conn) ? "connected" : "offline",
                               r.disks,
                               r.received,
                               r.processed,
                               r.lag,
                               r.rpo,
                               r.latest};
        if (cli_table_add(t, cells) != 0)
            goto out_nomem;
    }
    return cli_table_finish(t, true);
out_nomem:
    return cli_table_finish(t, false);
}

int cli_cmd_status(int argc, char **argv)
{
    cli_api_flags_t fl = {0};
    bool json = false;
    cli_api_t *api = NULL;
    json_t *health = NULL, *machines = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli__status_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, &fl, "status");
        if (m < 0)
            goto out_usage;
        if (m > 0)
            continue;
        if (argv[i][0] == '-')
            fprintf(stderr, "tidemark: status: unknown option '%s'\n", argv[i]);
        else
            fprintf(stderr, "tidemark: status: unexpected argument '%s'\n", argv[i]);
        goto out_usage;
    }

    int status = cli_api_open(&fl, &api);
    if (status != 0)
        return status;
    if (!json) {
        status = cli_api_get(api, "/v1/health", &health);
        if (status != 0)
            goto out_close;
    }
    status = cli_api_get(api, "/v1/machines", &machines);
    if (status != 0)
        goto out_close;
    if (json)
        status = cli_api_print_json(machines, stdout, false) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    else
        status = cli__status_print(health, machines, cli_api_addr(api));

out_close:
    json_decref(machines);
    json_decref(health);
    cli_api_close(api);
    return status;
out_usage:
    cli__status_usage(stderr);
    return CLI_EXIT_USAGE;
}
