/* Watching a job of the appliance until it ends (job_watch.h). */
#include "cli/job_watch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "cli/cmd.h"
#include "cli/progress.h"

/* How often the job is asked for its progress. */
#define CLI_JOB_POLL_NS 200000000L

static volatile sig_atomic_t cli__interrupted;

static void cli__on_sigint(int sig)
{
    (void)sig;
    cli__interrupted = 1;
}

/* Each machine's steps as they change, one line each on stderr:
 * "  web1  shutdown  succeeded  the agent stopped; ..." (seen remembers
 * what was said, by "machine/step"). */
static void cli__show_steps(cli_progress_t *pr, const json_t *job, json_t **seen)
{
    size_t i, k;
    const json_t *m, *st;
    if (!*seen)
        return;
    json_array_foreach(json_object_get(job, "machines"), i, m) {
        const char *name = json_string_value(json_object_get(m, "machine"));
        json_array_foreach(json_object_get(m, "steps"), k, st) {
            const char *step = json_string_value(json_object_get(st, "name"));
            const char *state = json_string_value(json_object_get(st, "state"));
            const char *detail = json_string_value(json_object_get(st, "detail"));
            if (!name || !step || !state || strcmp(state, "pending") == 0)
                continue;
            char key[256], said[512];
            snprintf(key, sizeof key, "%s/%s", name, step);
            snprintf(said, sizeof said, "%s %s", state, detail ? detail : "");
            const char *before = json_string_value(json_object_get(*seen, key));
            if (before && strcmp(before, said) == 0)
                continue;
            json_object_set_new(*seen, key, json_string(said));
            cli_progress_clear(pr);
            fprintf(stderr, "  %-16s %-16s %-10s %s\n", name, step, state, detail ? detail : "");
        }
    }
}

/* The job's progress, fed to the display. */
static void cli__show_progress(cli_progress_t *pr, const json_t *job)
{
    const json_t *p = json_object_get(job, "progress");
    json_int_t done = json_integer_value(json_object_get(p, "done_bytes"));
    json_int_t total = json_integer_value(json_object_get(p, "total_bytes"));
    if (json_is_object(p))
        cli_progress_update(pr, done > 0 ? (uint64_t)done : 0, total > 0 ? (uint64_t)total : 0);
}

/* Sleep one poll interval; returns early on Ctrl-C. */
static void cli__poll_pause(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = CLI_JOB_POLL_NS};
    while (!cli__interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Watch job id until it ends. 0 with *final the last answer, or an exit
 * status (said why).
 */
int cli_job_watch(cli_api_t *api, const char *id, bool json, const char *cmd, json_t **final)
{
    char path[256];
    cli_progress_t pr;
    json_t *answer = NULL, *seen = json_object();
    int status;

    char *esc = cli_api_escape(id);
    if (!esc) {
        fprintf(stderr, "tidemark: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    int n = snprintf(path, sizeof path, "/v1/jobs/%s", esc);
    tm_free(esc);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "tidemark: %s: the appliance's job id is too long\n", cmd);
        return CLI_EXIT_FAIL;
    }

    /* Ctrl-C now ends the watching, not the process: the job is the
     * appliance's, and it continues. No SA_RESTART: the pause must end. */
    struct sigaction sa = {.sa_handler = cli__on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    cli_api_set_cancel(api, &cli__interrupted);
    cli_progress_init(&pr, json);

    for (;;) {
        status = cli_api_get(api, path, &answer);
        if (status != 0)
            break;
        const json_t *job = json_object_get(answer, "job");
        const char *state = json_string_value(json_object_get(job, "state"));
        if (!state) {
            fprintf(stderr, "tidemark: %s: the appliance's answer about job %s has no state\n", cmd, id);
            status = CLI_EXIT_FAIL;
            break;
        }
        if (!json)
            cli__show_steps(&pr, job, &seen);
        cli__show_progress(&pr, job);
        /* Any other state (one a later version may add) is still going. */
        if (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0) {
            *final = answer;
            answer = NULL;
            break;
        }
        json_decref(answer);
        answer = NULL;
        cli__poll_pause();
        if (cli__interrupted) {
            status = CLI_EXIT_INTERRUPTED;
            break;
        }
    }
    cli_progress_finish(&pr);
    cli_api_set_cancel(api, NULL);
    sigaction(SIGINT, &old, NULL);
    json_decref(answer);
    json_decref(seen);

    if (status == CLI_EXIT_INTERRUPTED)
        fprintf(stderr, "tidemark: stopped watching; job %s continues on the appliance (GET /v1/jobs/%s)\n", id,
                id);
    else if (status != 0)
        fprintf(stderr, "tidemark: job %s was started on the appliance and may still be running\n", id);
    return status;
}

