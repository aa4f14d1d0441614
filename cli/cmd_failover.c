/*
 * The failover commands (architecture.md, "Command line"; api/failover.h):
 *
 *   tidemark failover MACHINE... --point SELECTOR [--shutdown] [--out DIR]
 *   tidemark failover MACHINE... --planned
 *   tidemark failover MACHINE --point SELECTOR --test
 *   tidemark change-point MACHINE... --point SELECTOR
 *   tidemark commit MACHINE...
 *
 * each with [--json] and the API flags. Each posts one job (POST /v1/jobs)
 * and watches it to its end (job_watch.h): the steps of each machine as
 * they happen, then what each machine ended with (its point and the NBD
 * URIs of its disks). --json: the job's final JSON on stdout instead.
 * Exit status 0 when every machine succeeded, 1 otherwise.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/job_watch.h"

#define CLI_FO_MAX_MACHINES 256

typedef struct cli_fo_args {
    const char *cmd;
    const char *machines[CLI_FO_MAX_MACHINES];
    int nmachines;
    const char *point;
    const char *out;
    const char *group;
    bool test, planned, shutdown, json;
} cli_fo_args_t;

static void cli__fo_usage(const char *cmd, FILE *out)
{
    if (strcmp(cmd, "failover") == 0)
        fputs("usage: tidemark failover MACHINE...|--group G --point SELECTOR [--shutdown] [--out DIR] [--json]\n"
              "       tidemark failover MACHINE...|--group G --planned [--out DIR] [--json]\n"
              "       tidemark failover MACHINE --point SELECTOR --test [--json]\n"
              "  fail MACHINE over: its disks are served at once, writable, as\n"
              "  nbd://NBD/MACHINE/DISK@failover at the point\n"
              "  --point SELECTOR  latest, latest-processed, latest-app, latest-multivm-processed,\n"
              "                    latest-multivm-app, a point id, or @TIME\n"
              "  --group G         every member of replication group G (with a latest-multivm\n"
              "                    selector, all at their newest common group point)\n"
              "  --shutdown        stop the source first (its agent takes no more writes and\n"
              "                    sends what it holds); the failover goes on if it cannot\n"
              "  --planned         stop the source, send everything, fail over to its final\n"
              "                    point: no data loss (the agent must be connected)\n"
              "  --test            a test failover: writable MACHINE/DISK@test exports over the\n"
              "                    point, thrown away by the test-cleanup job; replication goes on\n"
              "  --out DIR         also write raw images there, on the appliance (absolute)\n"
              "  --json            print the job's final JSON\n" CLI_API_FLAGS_USAGE,
              out);
    else if (strcmp(cmd, "change-point") == 0)
        fputs("usage: tidemark change-point MACHINE... --point SELECTOR [--json]\n"
              "  serve a failed-over MACHINE's disks at another point (before commit); what was\n"
              "  written to them since the failover is dropped\n"
              "  --point SELECTOR  latest, latest-processed, latest-app, a point id, or @TIME\n"
              "  --json            print the job's final JSON\n" CLI_API_FLAGS_USAGE,
              out);
    else
        fputs("usage: tidemark commit MACHINE... [--json]\n"
              "  make MACHINE's failover final: its disks become whole (no point needed), its\n"
              "  replication stops, its points are deleted and their journal space released\n"
              "  --json            print the job's final JSON\n" CLI_API_FLAGS_USAGE,
              out);
}

/* 0, -1 for help, or CLI_EXIT_USAGE (said why). */
static int cli__fo_parse(int argc, char **argv, cli_fo_args_t *a, cli_api_flags_t *fl)
{
    bool is_fo = strcmp(a->cmd, "failover") == 0, is_cp = strcmp(a->cmd, "change-point") == 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return -1;
        bool *flag = strcmp(arg, "--json") == 0                ? &a->json
                     : is_fo && strcmp(arg, "--test") == 0     ? &a->test
                     : is_fo && strcmp(arg, "--planned") == 0  ? &a->planned
                     : is_fo && strcmp(arg, "--shutdown") == 0 ? &a->shutdown
                                                               : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, a->cmd);
        if (m == 0 && (is_fo || is_cp) && (m = cli_opt_value(argc, argv, &i, "--point", &a->point)) < 0)
            fprintf(stderr, "tidemark: %s: --point needs a value\n", a->cmd);
        if (m == 0 && is_fo && (m = cli_opt_value(argc, argv, &i, "--out", &a->out)) < 0)
            fprintf(stderr, "tidemark: %s: --out needs a value\n", a->cmd);
        if (m == 0 && is_fo && (m = cli_opt_value(argc, argv, &i, "--group", &a->group)) < 0)
            fprintf(stderr, "tidemark: %s: --group needs a value\n", a->cmd);
        if (m < 0)
            return CLI_EXIT_USAGE;
        if (m > 0)
            continue;
        if (arg[0] == '-') {
            fprintf(stderr, "tidemark: %s: unknown option '%s'\n", a->cmd, arg);
            return CLI_EXIT_USAGE;
        }
        if (a->nmachines == CLI_FO_MAX_MACHINES) {
            fprintf(stderr, "tidemark: %s: at most %d machines at a time\n", a->cmd, CLI_FO_MAX_MACHINES);
            return CLI_EXIT_USAGE;
        }
        a->machines[a->nmachines++] = arg;
    }
    const char *bad = NULL;
    if (a->nmachines == 0 && !a->group)
        bad = "which machine? (a MACHINE, or --group G, is needed)";
    else if (a->nmachines && a->group)
        bad = "name machines or --group, not both";
    else if (a->group && a->test)
        bad = "--test takes one machine, not a group";
    else if ((is_cp || (is_fo && !a->planned)) && !a->point)
        bad = "which point? (--point SELECTOR is needed)";
    else if (a->planned && a->point)
        bad = "--planned takes no --point: it fails over to the source's final point";
    else if (a->planned && a->test)
        bad = "--planned and --test do not go together";
    else if (a->test && (a->nmachines > 1 || a->out || a->shutdown))
        bad = "--test takes one machine, and neither --out nor --shutdown";
    if (bad) {
        fprintf(stderr, "tidemark: %s: %s\n", a->cmd, bad);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* The request body; NULL when a name is not UTF-8 (or out of memory). */
static json_t *cli__fo_request(const cli_fo_args_t *a, const char *out_abs)
{
    const char *action = a->test ? "test-failover" : a->planned ? "planned-failover" : a->cmd;
    json_t *body = json_pack("{s:s}", "action", action);
    if (!body)
        return NULL;
    if (a->test) {
        if (json_object_set_new(body, "machine", json_string(a->machines[0])) != 0)
            goto fail;
    } else if (a->group) {
        if (json_object_set_new(body, "group", json_string(a->group)) != 0)
            goto fail;
    } else {
        json_t *ms = json_array();
        if (json_object_set_new(body, "machines", ms) != 0)
            goto fail;
        for (int i = 0; i < a->nmachines; i++)
            if (json_array_append_new(ms, json_string(a->machines[i])) != 0)
                goto fail;
    }
    if (a->point && json_object_set_new(body, "point", json_string(a->point)) != 0)
        goto fail;
    if (a->shutdown || out_abs) {
        json_t *o = json_object();
        if (json_object_set_new(body, "options", o) != 0)
            goto fail;
        if (a->shutdown && json_object_set_new(o, "shutdown", json_true()) != 0)
            goto fail;
        if (out_abs && json_object_set_new(o, "out", json_string(out_abs)) != 0)
            goto fail;
    }
    return body;
fail:
    json_decref(body);
    return NULL;
}

static const char *cli__s(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* What each machine ended with, for people. */
static void cli__fo_say(const json_t *job)
{
    const json_t *ms = json_object_get(job, "machines");
    size_t i, k;
    const json_t *m, *e;
    if (!json_is_array(ms)) { /* a test failover: one machine, at the top */
        printf("%s of %s: %s\n", cli__s(job, "action", "?"), cli__s(job, "machine", "?"), cli__s(job, "state", "?"));
        json_array_foreach(json_object_get(job, "exports"), k, e)
            printf("  %s\n", cli__s(e, "uri", "?"));
        return;
    }
    json_array_foreach(ms, i, m) {
        const json_t *pt = json_object_get(m, "point");
        printf("%s: %s", cli__s(m, "machine", "?"), cli__s(m, "state", "?"));
        if (json_is_object(pt))
            printf(", point %s (%s, %s)", cli__s(pt, "id", "custom"), cli__s(pt, "kind", "?"),
                   cli__s(pt, "time", "?"));
        printf("\n");
        json_array_foreach(json_object_get(m, "exports"), k, e)
            printf("  %s\n", cli__s(e, "uri", "?"));
        const json_t *err = json_object_get(m, "error");
        if (json_is_object(err))
            printf("  error: %s (%s)\n", cli__s(err, "message", "?"), cli__s(err, "code", "?"));
    }
}

static int cli__fo_run(const char *cmd, int argc, char **argv)
{
    cli_fo_args_t a = {.cmd = cmd};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *request = NULL, *created = NULL, *final = NULL;
    int status = cli__fo_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__fo_usage(cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (status != 0) {
        cli__fo_usage(cmd, stderr);
        return status;
    }
    char out_abs[PATH_MAX];
    if (a.out && !realpath(a.out, out_abs)) {
        fprintf(stderr, "tidemark: %s: --out %s: %s\n", cmd, a.out, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    if ((status = cli_api_open(&fl, &api)) != 0)
        return status;
    request = cli__fo_request(&a, a.out ? out_abs : NULL);
    if (!request) {
        fprintf(stderr, "tidemark: %s: machine names and the point must be UTF-8 text\n", cmd);
        status = CLI_EXIT_USAGE;
        goto out;
    }
    if ((status = cli_api_post(api, "/v1/jobs", request, &created)) != 0)
        goto out;
    const char *id = json_string_value(json_object_get(json_object_get(created, "job"), "id"));
    if (!id) {
        fprintf(stderr, "tidemark: %s: the appliance's answer names no job id\n", cmd);
        status = CLI_EXIT_FAIL;
        goto out;
    }
    if (!a.json)
        fprintf(stderr, "tidemark: job %s: %s of %zu machine%s\n", id,
                cli__s(json_object_get(created, "job"), "action", cmd),
                json_array_size(json_object_get(json_object_get(created, "job"), "machines")),
                json_array_size(json_object_get(json_object_get(created, "job"), "machines")) == 1 ? "" : "s");
    if ((status = cli_job_watch(api, id, a.json, cmd, &final)) != 0)
        goto out;
    const json_t *job = json_object_get(final, "job");
    bool ok = strcmp(cli__s(job, "state", ""), "succeeded") == 0;
    if (a.json) {
        if (cli_api_print_json(final, stdout, true) != 0)
            status = CLI_EXIT_FAIL;
    } else {
        cli__fo_say(job);
        const json_t *error = json_object_get(job, "error");
        if (!ok && json_is_object(error)) {
            char what[128];
            snprintf(what, sizeof what, "job %s", id);
            cli_api_print_error(error, what);
        } else if (!ok) {
            fprintf(stderr, "tidemark: job %s %s\n", id, cli__s(job, "state", "ended"));
        }
    }
    if (status == 0)
        status = !ok ? CLI_EXIT_FAIL : fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(final);
    json_decref(created);
    json_decref(request);
    cli_api_close(api);
    return status;
}

int cli_cmd_failover(int argc, char **argv)
{
    return cli__fo_run("failover", argc, argv);
}

int cli_cmd_change_point(int argc, char **argv)
{
    return cli__fo_run("change-point", argc, argv);
}

int cli_cmd_commit(int argc, char **argv)
{
    return cli__fo_run("commit", argc, argv);
}
