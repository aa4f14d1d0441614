/*
 * `tidemark jobs [ID [--cancel]] [--json] [--api ADDR] [--data DIR] [--config FILE]`
 *
 * The appliance's jobs (GET /v1/jobs): a table, newest first; with an ID,
 * one job in full (GET /v1/jobs/{id}): its state, point, progress, the
 * files or exports it made, each machine's steps, its error. --cancel asks
 * the appliance to cancel job ID (POST /v1/jobs/{id}/cancel: a failover in
 * progress, undone, the machines replicating as before). --json prints the
 * appliance's JSON.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/table.h"

typedef struct cli_jobs_args {
    const char *id;
    bool json;
    bool cancel;
} cli_jobs_args_t;

static void cli__jobs_usage(FILE *out)
{
    fputs("usage: tidemark jobs [ID [--cancel]] [--json] [--api ADDR] [--data DIR] [--config FILE]\n"
          "  the appliance's jobs, newest first; with ID, that job in full\n"
          "  --cancel          cancel job ID (a failover in progress: it is undone)\n"
          "  --json            print the appliance's JSON answer\n" CLI_API_FLAGS_USAGE,
          out);
}

static int cli__jobs_parse(int argc, char **argv, cli_jobs_args_t *a, cli_api_flags_t *fl)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return -1;
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "--cancel") == 0) {
            *(argv[i][2] == 'j' ? &a->json : &a->cancel) = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, "jobs");
        if (m < 0)
            return CLI_EXIT_USAGE;
        if (m > 0)
            continue;
        if (argv[i][0] == '-' || a->id) {
            fprintf(stderr, "tidemark: jobs: %s '%s'\n", argv[i][0] == '-' ? "unknown option" : "unexpected argument",
                    argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (strspn(argv[i], "0123456789") != strlen(argv[i]) || strlen(argv[i]) > 20) {
            fprintf(stderr, "tidemark: jobs: '%s' is not a job id (a number)\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        a->id = argv[i];
    }
    if (a->cancel && !a->id) {
        fprintf(stderr, "tidemark: jobs: --cancel needs the job's ID\n");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static const char *cli__str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

/* "42%" of the job's progress, or "-". */
static void cli__progress(const json_t *job, char *buf, size_t len)
{
    const json_t *p = json_object_get(job, "progress");
    json_int_t done = json_integer_value(json_object_get(p, "done_bytes"));
    json_int_t total = json_integer_value(json_object_get(p, "total_bytes"));
    if (total > 0)
        snprintf(buf, len, "%d%%", (int)(done * 100 / total));
    else
        snprintf(buf, len, "-");
}

static int cli__jobs_table(const json_t *answer)
{
    static const char *const headers[] = {"ID", "ACTION", "MACHINE", "STATE", "POINT", "PROGRESS", "CREATED", "ERROR"};
    const json_t *jobs = json_object_get(answer, "jobs");
    if (json_array_size(jobs) == 0) {
        printf("no jobs (they are kept in memory until the appliance restarts)\n");
        return CLI_EXIT_OK;
    }
    cli_table_t *t = cli_table_new(8, headers);
    if (!t)
        goto out_nomem;
    cli_table_align_right(t, 0);
    size_t i;
    const json_t *j;
    json_array_foreach(jobs, i, j) {
        char when[64], prog[16];
        cli_table_time(when, sizeof when, json_string_value(json_object_get(j, "created")));
        cli__progress(j, prog, sizeof prog);
        const json_t *pt = json_object_get(j, "point");
        const char *cells[] = {cli__str(j, "id"),
                               cli__str(j, "action"),
                               cli__str(j, "machine"),
                               cli__str(j, "state"),
                               json_is_object(pt) ? cli__str(pt, "id") : "-",
                               prog,
                               when,
                               cli__str(json_object_get(j, "error"), "message")};
        if (cli_table_add(t, cells) != 0)
            goto out_nomem;
    }
    return cli_table_finish(t, true);
out_nomem:
    return cli_table_finish(t, false);
}

static int cli__jobs_one(const json_t *answer)
{
    const json_t *j = json_object_get(answer, "job");
    const json_t *pt = json_object_get(j, "point");
    char prog[16];
    cli__progress(j, prog, sizeof prog);
    printf("job %s: %s of %s, %s\n", cli__str(j, "id"), cli__str(j, "action"), cli__str(j, "machine"),
           cli__str(j, "state"));
    printf("  created   %s\n  finished  %s\n", cli__str(j, "created"), cli__str(j, "finished"));
    if (json_is_object(pt))
        printf("  point     %s (%s, %s)\n", json_is_string(json_object_get(pt, "id")) ? cli__str(pt, "id") : "custom",
               cli__str(pt, "kind"), cli__str(pt, "time"));
    printf("  progress  %s\n", prog);
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(j, "files"), i, v)
        printf("  file      %s\n", json_string_value(v));
    json_array_foreach(json_object_get(j, "exports"), i, v)
        printf("  export    %s\n", cli__str(v, "uri"));
    const json_t *m, *st;
    size_t k;
    json_array_foreach(json_object_get(j, "machines"), i, m) {
        printf("  machine   %s: %s\n", cli__str(m, "machine"), cli__str(m, "state"));
        json_array_foreach(json_object_get(m, "steps"), k, st)
            printf("    %-16s %-10s %s\n", cli__str(st, "name"), cli__str(st, "state"),
                   json_is_string(json_object_get(st, "detail")) ? cli__str(st, "detail") : "");
        json_array_foreach(json_object_get(m, "exports"), k, v)
            printf("    export  %s\n", cli__str(v, "uri"));
        const json_t *me = json_object_get(m, "error");
        if (json_is_object(me))
            printf("    error   %s (%s)\n", cli__str(me, "message"), cli__str(me, "code"));
    }
    const json_t *e = json_object_get(j, "error");
    if (json_is_object(e))
        printf("  error     %s (%s)\n", cli__str(e, "message"), cli__str(e, "code"));
    return CLI_EXIT_OK;
}

int cli_cmd_jobs(int argc, char **argv)
{
    cli_jobs_args_t a = {0};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *answer = NULL;
    int status = cli__jobs_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__jobs_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (status != 0) {
        cli__jobs_usage(stderr);
        return status;
    }
    if ((status = cli_api_open(&fl, &api)) != 0)
        return status;
    char path[64];
    if (a.id)
        snprintf(path, sizeof path, "/v1/jobs/%s%s", a.id, a.cancel ? "/cancel" : "");
    else
        snprintf(path, sizeof path, "/v1/jobs");
    if (a.cancel) {
        json_t *empty = json_object();
        status = empty ? cli_api_post(api, path, empty, &answer) : CLI_EXIT_FAIL;
        json_decref(empty);
        if (status == 0 && !a.json)
            fprintf(stderr, "tidemark: job %s: cancel asked; it undoes what it did and ends \"cancelled\"\n", a.id);
    } else {
        status = cli_api_get(api, path, &answer);
    }
    if (status == 0) {
        if (a.json)
            status = cli_api_print_json(answer, stdout, false) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        else
            status = a.id ? cli__jobs_one(answer) : cli__jobs_table(answer);
        if (fflush(stdout) != 0)
            status = CLI_EXIT_FAIL;
    }
    json_decref(answer);
    cli_api_close(api);
    return status;
}
