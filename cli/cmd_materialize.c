/*
 * `tidemark materialize MACHINE --point SELECTOR --out DIR [--json]
 *                       [--api ADDR] [--data DIR] [--config FILE]`
 *
 * Has the appliance write one sparse raw image per disk of MACHINE at the
 * point SELECTOR into DIR (POST /v1/jobs, action materialize), then watches
 * the job (GET /v1/jobs/{id}) until it succeeds or fails, showing its
 * progress (progress.h), and prints the files written.
 *
 * DIR is made absolute here, since the appliance does not share our working
 * folder: an existing folder's real path, or a new folder (0755, said so).
 * The appliance writes the files itself, so the client must run on the
 * appliance's machine and DIR must be writable by the appliance's user.
 *
 * Watching is job_watch.h's (Ctrl-C stops the watching only). --json:
 * progress as JSON lines on stdout, then the final answer of
 * GET /v1/jobs/{id} on one line.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/job_watch.h"

typedef struct cli_materialize_args {
    const char *machine;
    const char *point;
    const char *out;
    bool json;
} cli_materialize_args_t;

static void cli__materialize_usage(FILE *out)
{
    fputs("usage: tidemark materialize MACHINE --point SELECTOR --out DIR [--json]\n"
          "                            [--api ADDR] [--data DIR] [--config FILE]\n"
          "  write one sparse raw image per disk of MACHINE at a point, DIR/DISK.raw,\n"
          "  showing the progress; run it on the appliance's machine (the appliance\n"
          "  writes the files)\n"
          "  --point SELECTOR  latest, latest-processed, latest-app, a point id, or @TIME\n"
          "  --out DIR         the folder for the images (made 0755 when missing)\n"
          "  --json            progress as JSON lines on stdout, then the final job\n" CLI_API_FLAGS_USAGE,
          out);
}

/* 0, -1 for help, or CLI_EXIT_USAGE (said why). */
static int cli__materialize_parse(int argc, char **argv, cli_materialize_args_t *a, cli_api_flags_t *fl)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return -1;
        if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, "materialize");
        if (m == 0) {
            m = cli_opt_value(argc, argv, &i, "--point", &a->point);
            if (m < 0)
                fprintf(stderr, "tidemark: materialize: --point needs a value\n");
        }
        if (m == 0) {
            m = cli_opt_value(argc, argv, &i, "--out", &a->out);
            if (m < 0)
                fprintf(stderr, "tidemark: materialize: --out needs a value\n");
        }
        if (m < 0)
            return CLI_EXIT_USAGE;
        if (m > 0)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "tidemark: materialize: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (a->machine) {
            fprintf(stderr, "tidemark: materialize: unexpected argument '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        a->machine = argv[i];
    }
    const char *missing = !a->machine ? "which machine? (a MACHINE is needed)"
                          : !a->point ? "which point? (--point SELECTOR is needed)"
                          : !a->out   ? "where to? (--out DIR is needed)"
                                      : NULL;
    if (missing) {
        fprintf(stderr, "tidemark: materialize: %s\n", missing);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* The real path of the folder out, made when missing. 0 or an exit status. */
static int cli__out_folder(const char *out, char abs[PATH_MAX])
{
    struct stat st;
    bool made = false;
    if (stat(out, &st) != 0) {
        if (errno != ENOENT) {
            fprintf(stderr, "tidemark: materialize: %s: %s\n", out, strerror(errno));
            return CLI_EXIT_FAIL;
        }
        if (mkdir(out, 0755) != 0) {
            fprintf(stderr, "tidemark: materialize: cannot create the folder %s: %s\n", out, strerror(errno));
            return CLI_EXIT_FAIL;
        }
        made = true;
    } else if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tidemark: materialize: --out %s is not a folder\n", out);
        return CLI_EXIT_USAGE;
    }
    if (!realpath(out, abs)) {
        fprintf(stderr, "tidemark: materialize: %s: %s\n", out, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    if (made)
        fprintf(stderr, "tidemark: created the folder %s\n", abs);
    return 0;
}

/* The final report for people: the point and the files. */
static void cli__say_done(const json_t *job, const char *machine, const char *dir, uint64_t elapsed_ns)
{
    const json_t *point = json_object_get(job, "point");
    const char *id = json_string_value(json_object_get(point, "id"));
    const char *kind = json_string_value(json_object_get(point, "kind"));
    const char *time = json_string_value(json_object_get(point, "time"));
    printf("materialized %s at point %s (%s, %s) into %s in %.1f s:\n", machine, id ? id : "-",
           kind ? kind : "?", time ? time : "?", dir, (double)elapsed_ns / 1e9);
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(job, "files"), i, f) {
        const char *name = json_string_value(f);
        if (name)
            printf("  %s\n", name);
    }
}

int cli_cmd_materialize(int argc, char **argv)
{
    cli_materialize_args_t a = {0};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *request = NULL, *created = NULL, *final = NULL;
    char dir[PATH_MAX];

    int status = cli__materialize_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__materialize_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (status != 0) {
        cli__materialize_usage(stderr);
        return status;
    }

    status = cli_api_open(&fl, &api);
    if (status != 0)
        return status;
    /* Reach the appliance before making a folder it would never fill. */
    status = cli_api_get(api, "/v1/health", &created);
    if (status != 0)
        goto out_close;
    json_decref(created);
    created = NULL;
    status = cli__out_folder(a.out, dir);
    if (status != 0)
        goto out_close;

    request = json_pack("{s:s, s:s, s:s, s:s}", "action", "materialize", "machine", a.machine, "point", a.point,
                        "out", dir);
    if (!request) {
        /* json_pack fails on a string that is not UTF-8, or on ENOMEM. */
        fprintf(stderr, "tidemark: materialize: the machine, point and folder must be UTF-8 text\n");
        status = CLI_EXIT_USAGE;
        goto out_close;
    }
    uint64_t t0 = tm_mono_ns();
    status = cli_api_post(api, "/v1/jobs", request, &created);
    if (status != 0)
        goto out_close;
    const char *id = json_string_value(json_object_get(json_object_get(created, "job"), "id"));
    if (!id) {
        fprintf(stderr, "tidemark: materialize: the appliance's answer names no job id\n");
        status = CLI_EXIT_FAIL;
        goto out_close;
    }
    status = cli_job_watch(api, id, a.json, "materialize", &final);
    if (status != 0)
        goto out_close;

    const json_t *job = json_object_get(final, "job");
    bool ok = strcmp(json_string_value(json_object_get(job, "state")), "succeeded") == 0;
    if (a.json && cli_api_print_json(final, stdout, true) != 0) {
        fprintf(stderr, "tidemark: materialize: cannot write to stdout\n");
        status = CLI_EXIT_FAIL;
        goto out_close;
    }
    if (!ok) {
        char what[300];
        snprintf(what, sizeof what, "materialize of %s failed (job %s)", a.machine, id);
        const json_t *error = json_object_get(job, "error");
        if (json_is_object(error))
            cli_api_print_error(error, what);
        else
            fprintf(stderr, "tidemark: %s\n", what);
        status = CLI_EXIT_FAIL;
        goto out_close;
    }
    if (!a.json)
        cli__say_done(job, a.machine, dir, tm_mono_ns() - t0);
    status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;

out_close:
    json_decref(final);
    json_decref(created);
    json_decref(request);
    cli_api_close(api);
    return status;
}
