/*
 * `tidemark groups [list | show G | add G MACHINE... | set G [MACHINE...] |
 *                   delete G | round G [--app]] [settings] [--json] [API flags]`
 *
 * Replication groups through the API (docs/api.md, "Replication groups"):
 * a table of them (GET /v1/groups); one with its newest rounds (GET
 * /v1/groups/{g}); make one (POST /v1/groups), change one (PATCH: the
 * members when any are named, and the settings given), delete one
 * (DELETE), or run a round now (POST /v1/groups/{g}/rounds). Settings:
 * --crash-every D|off, --app-every D|off (D: 30s, 5m, 1h...), --hold MS,
 * --app-hold MS. Groups of the configuration file are shown, not changed.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "cli/api_client.h"
#include "cli/cmd.h"
#include "cli/config.h"
#include "cli/table.h"
#include "consistency/consistency.h"

/* Rounds `groups show` lists. */
#define CLI_GROUPS_SHOW_ROUNDS 10u

typedef struct cli_groups_args {
    const char *verb;
    const char *group;
    const char **machines;
    size_t nmachines;
    json_t *settings; /* the settings given, as the definition's fields */
    bool app;
    bool json;
} cli_groups_args_t;

static void cli__groups_usage(FILE *out)
{
    fputs("usage: tidemark groups [list]                       the replication groups\n"
          "       tidemark groups show G                       one group and its newest rounds\n"
          "       tidemark groups add G MACHINE... [SETTINGS]  make a group\n"
          "       tidemark groups set G [MACHINE...] [SETTINGS]\n"
          "                                                    change its members (when named) and settings\n"
          "       tidemark groups delete G                     delete a group (its points stay)\n"
          "       tidemark groups round G [--app]              run a round now\n"
          "settings:\n"
          "  --crash-every D   crash-consistent rounds every D (1s to 30d, e.g. 10s, 5m; off: none)\n"
          "  --app-every D     app-consistent rounds every D (1m to 30d; off: none)\n"
          "  --hold MS         how long a member may hold its writes in a crash round (e.g. 100ms, 1s)\n"
          "  --app-hold MS     the same for app rounds\n"
          "  --json            print the appliance's JSON answer\n" CLI_API_FLAGS_USAGE,
          out);
}

/* One setting's value into a->settings. 0 or CLI_EXIT_USAGE (said). */
static int cli__groups_setting(cli_groups_args_t *a, const char *opt, const char *v)
{
    char err[256];
    if (strcmp(opt, "--hold") == 0 || strcmp(opt, "--app-hold") == 0) {
        uint32_t ms;
        if (cli_config_parse_ms(v, opt, 1, CNS_MAX_HOLD_MS, &ms, err, sizeof err) != 0)
            goto out_bad;
        json_object_set_new(a->settings, opt[2] == 'h' ? "hold_ms" : "app_hold_ms", json_integer(ms));
        return 0;
    }
    bool crash = strcmp(opt, "--crash-every") == 0;
    const char *key = crash ? "crash_every_seconds" : "app_every_seconds";
    if (strcmp(v, "off") == 0) {
        json_object_set_new(a->settings, key, json_null());
        return 0;
    }
    uint64_t ns;
    if (cli_config_parse_duration(v, opt, crash ? CNS_MIN_CRASH_EVERY_NS : 60ull * 1000000000ull,
                                  30ull * 86400 * 1000000000ull, &ns, err, sizeof err) != 0)
        goto out_bad;
    json_object_set_new(a->settings, key, json_real((double)ns / 1e9));
    return 0;
out_bad:
    fprintf(stderr, "tidemark: groups: %s\n", err);
    return CLI_EXIT_USAGE;
}

static int cli__groups_parse(int argc, char **argv, cli_groups_args_t *a, cli_api_flags_t *fl)
{
    static const char *const verbs[] = {"list", "show", "add", "set", "delete", "round"};
    static const char *const settings[] = {"--crash-every", "--app-every", "--hold", "--app-hold"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return -1;
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "--app") == 0) {
            *(argv[i][2] == 'j' ? &a->json : &a->app) = true;
            continue;
        }
        int m = cli_api_flag(argc, argv, &i, fl, "groups");
        if (m < 0)
            return CLI_EXIT_USAGE;
        if (m > 0)
            continue;
        bool setting = false;
        for (size_t k = 0; k < sizeof settings / sizeof settings[0] && !setting; k++) {
            const char *v;
            int r = cli_opt_value(argc, argv, &i, settings[k], &v);
            if (r < 0) {
                fprintf(stderr, "tidemark: groups: %s needs a value\n", settings[k]);
                return CLI_EXIT_USAGE;
            }
            if (r > 0) {
                setting = true;
                if (cli__groups_setting(a, settings[k], v) != 0)
                    return CLI_EXIT_USAGE;
            }
        }
        if (setting)
            continue;
        if (argv[i][0] == '-') {
            fprintf(stderr, "tidemark: groups: unknown option '%s'\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (!a->verb) {
            for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++)
                if (strcmp(argv[i], verbs[k]) == 0)
                    a->verb = verbs[k];
            if (!a->verb) {
                fprintf(stderr, "tidemark: groups: '%s' is not list, show, add, set, delete or round\n", argv[i]);
                return CLI_EXIT_USAGE;
            }
        } else if (!a->group) {
            a->group = argv[i];
        } else {
            a->machines[a->nmachines++] = argv[i];
        }
    }
    if (!a->verb)
        a->verb = "list";
    bool named = strcmp(a->verb, "list") != 0;
    if (named && !a->group) {
        fprintf(stderr, "tidemark: groups %s: which group?\n", a->verb);
        return CLI_EXIT_USAGE;
    }
    if (!named && a->group) {
        fprintf(stderr, "tidemark: groups: unexpected argument '%s'\n", a->group);
        return CLI_EXIT_USAGE;
    }
    bool edits = strcmp(a->verb, "add") == 0 || strcmp(a->verb, "set") == 0;
    if (strcmp(a->verb, "add") == 0 && a->nmachines == 0) {
        fprintf(stderr, "tidemark: groups add: name the group's machines\n");
        return CLI_EXIT_USAGE;
    }
    if (!edits && (a->nmachines || json_object_size(a->settings))) {
        fprintf(stderr, "tidemark: groups %s: machines and settings go with add or set\n", a->verb);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(a->verb, "set") == 0 && a->nmachines == 0 && json_object_size(a->settings) == 0) {
        fprintf(stderr, "tidemark: groups set: nothing to change (name machines, or a setting)\n");
        return CLI_EXIT_USAGE;
    }
    if (a->app && strcmp(a->verb, "round") != 0) {
        fprintf(stderr, "tidemark: groups: --app goes with round\n");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static const char *cli__s(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

/* "10s", "1h", "off" for an "…_every_seconds". */
static void cli__every(const json_t *v, char *buf, size_t len)
{
    if (!json_is_number(v)) {
        snprintf(buf, len, "off");
        return;
    }
    double s = json_number_value(v);
    if (s >= 3600 && (long long)s % 3600 == 0)
        snprintf(buf, len, "%lldh", (long long)s / 3600);
    else if (s >= 60 && (long long)s % 60 == 0)
        snprintf(buf, len, "%lldm", (long long)s / 60);
    else
        snprintf(buf, len, "%gs", s);
}

static void cli__members(const json_t *g, char *buf, size_t len)
{
    size_t i, at = 0;
    const json_t *m;
    buf[0] = '\0';
    json_array_foreach(json_object_get(g, "members"), i, m) {
        int n = snprintf(buf + at, len - at, "%s%s", i ? "," : "", json_string_value(m));
        if (n < 0 || (size_t)n >= len - at)
            break;
        at += (size_t)n;
    }
}

static int cli__groups_table(const json_t *answer)
{
    static const char *const headers[] = {"GROUP", "MEMBERS", "SOURCE", "CRASH", "APP", "HOLD", "RECORDED",
                                          "ABORTED", "LAST ROUND"};
    const json_t *groups = json_object_get(answer, "groups");
    if (json_array_size(groups) == 0) {
        printf("no replication groups (tidemark groups add G MACHINE...)\n");
        return CLI_EXIT_OK;
    }
    cli_table_t *t = cli_table_new(9, headers);
    if (!t)
        goto out_nomem;
    cli_table_align_right(t, 6);
    cli_table_align_right(t, 7);
    size_t i;
    const json_t *g;
    json_array_foreach(groups, i, g) {
        char members[512], crash[32], app[32], hold[24], rec[24], ab[24], last[300];
        cli__members(g, members, sizeof members);
        cli__every(json_object_get(g, "crash_every_seconds"), crash, sizeof crash);
        cli__every(json_object_get(g, "app_every_seconds"), app, sizeof app);
        snprintf(hold, sizeof hold, "%lld ms", (long long)json_integer_value(json_object_get(g, "hold_ms")));
        const json_t *r = json_object_get(g, "rounds");
        snprintf(rec, sizeof rec, "%lld", (long long)json_integer_value(json_object_get(r, "recorded")));
        snprintf(ab, sizeof ab, "%lld", (long long)json_integer_value(json_object_get(r, "aborted")));
        const json_t *lr = json_object_get(g, "last_round");
        if (json_is_object(lr))
            snprintf(last, sizeof last, "%s %s%s%s", cli__s(lr, "kind"), cli__s(lr, "state"),
                     json_is_string(json_object_get(lr, "reason")) ? ": " : "",
                     json_is_string(json_object_get(lr, "reason")) ? cli__s(lr, "reason") : "");
        else
            snprintf(last, sizeof last, "-");
        const char *cells[] = {cli__s(g, "name"), members, cli__s(g, "source"), crash, app, hold, rec, ab, last};
        if (cli_table_add(t, cells) != 0)
            goto out_nomem;
    }
    return cli_table_finish(t, true);
out_nomem:
    return cli_table_finish(t, false);
}

static int cli__groups_one(const json_t *answer)
{
    const json_t *g = json_object_get(answer, "group");
    char members[4096], crash[32], app[32];
    cli__members(g, members, sizeof members);
    cli__every(json_object_get(g, "crash_every_seconds"), crash, sizeof crash);
    cli__every(json_object_get(g, "app_every_seconds"), app, sizeof app);
    const json_t *r = json_object_get(g, "rounds");
    printf("group %s (from the %s)\n", cli__s(g, "name"),
           strcmp(cli__s(g, "source"), "api") == 0 ? "API" : "configuration file");
    printf("  members   %s\n", members);
    printf("  crash     %s%s, hold up to %lld ms\n", strcmp(crash, "off") ? "every " : "on request only",
           strcmp(crash, "off") ? crash : "", (long long)json_integer_value(json_object_get(g, "hold_ms")));
    printf("  app       %s%s, hold up to %lld ms\n", strcmp(app, "off") ? "every " : "on request only",
           strcmp(app, "off") ? app : "", (long long)json_integer_value(json_object_get(g, "app_hold_ms")));
    printf("  rounds    %lld recorded, %lld aborted, %lld unrecorded (since start)\n",
           (long long)json_integer_value(json_object_get(r, "recorded")),
           (long long)json_integer_value(json_object_get(r, "aborted")),
           (long long)json_integer_value(json_object_get(r, "unrecorded")));
    const json_t *hist = json_object_get(g, "history");
    if (json_array_size(hist) == 0)
        return CLI_EXIT_OK;
    static const char *const headers[] = {"ROUND", "KIND", "STATE", "PREPARE", "ROUND TIME", "REASON"};
    cli_table_t *t = cli_table_new(6, headers);
    bool complete = t != NULL;
    if (t) {
        cli_table_align_right(t, 3);
        cli_table_align_right(t, 4);
    }
    for (size_t i = 0; complete && i < json_array_size(hist) && i < CLI_GROUPS_SHOW_ROUNDS; i++) {
        const json_t *h = json_array_get(hist, i);
        char prep[24] = "-", rt[24] = "-";
        if (json_is_number(json_object_get(h, "prepare_ms")))
            snprintf(prep, sizeof prep, "%.1f ms", json_number_value(json_object_get(h, "prepare_ms")));
        if (json_is_number(json_object_get(h, "round_ms")))
            snprintf(rt, sizeof rt, "%.1f ms", json_number_value(json_object_get(h, "round_ms")));
        const char *cells[] = {cli__s(h, "id"), cli__s(h, "kind"), cli__s(h, "state"), prep, rt, cli__s(h, "reason")};
        complete = cli_table_add(t, cells) == 0;
    }
    printf("\n");
    return cli_table_finish(t, complete);
}

/* The request of a's verb: its answer in *answer, or the exit status. */
static int cli__groups_ask(cli_api_t *api, const cli_groups_args_t *a, json_t **answer)
{
    char path[256];
    char *g = a->group ? cli_api_escape(a->group) : NULL;
    if (a->group && !g) {
        fprintf(stderr, "tidemark: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    int status;
    if (strcmp(a->verb, "list") == 0) {
        status = cli_api_get(api, "/v1/groups", answer);
    } else if (strcmp(a->verb, "show") == 0) {
        snprintf(path, sizeof path, "/v1/groups/%s", g);
        status = cli_api_get(api, path, answer);
    } else if (strcmp(a->verb, "delete") == 0) {
        snprintf(path, sizeof path, "/v1/groups/%s", g);
        status = cli_api_send(api, "DELETE", path, NULL, answer);
    } else if (strcmp(a->verb, "round") == 0) {
        snprintf(path, sizeof path, "/v1/groups/%s/rounds", g);
        json_t *body = json_pack("{s:s}", "kind", a->app ? "app" : "crash");
        status = body ? cli_api_post(api, path, body, answer) : CLI_EXIT_FAIL;
        json_decref(body);
    } else {
        json_t *body = json_deep_copy(a->settings);
        if (body && a->nmachines) {
            json_t *ms = json_array();
            for (size_t i = 0; i < a->nmachines; i++)
                json_array_append_new(ms, json_string(a->machines[i]));
            json_object_set_new(body, "members", ms);
        }
        bool add = strcmp(a->verb, "add") == 0;
        if (body && add)
            json_object_set_new(body, "name", json_string(a->group));
        snprintf(path, sizeof path, add ? "/v1/groups" : "/v1/groups/%s", g);
        status = body ? cli_api_send(api, add ? "POST" : "PATCH", path, body, answer) : CLI_EXIT_FAIL;
        json_decref(body);
    }
    tm_free(g);
    return status;
}

int cli_cmd_groups(int argc, char **argv)
{
    cli_groups_args_t a = {0};
    cli_api_flags_t fl = {0};
    cli_api_t *api = NULL;
    json_t *answer = NULL;
    a.settings = json_object();
    a.machines = tm_calloc((size_t)argc, sizeof *a.machines);
    if (!a.settings || !a.machines) {
        json_decref(a.settings);
        tm_free(a.machines);
        fprintf(stderr, "tidemark: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    int status = cli__groups_parse(argc, argv, &a, &fl);
    if (status < 0) {
        cli__groups_usage(stdout);
        status = CLI_EXIT_OK;
        goto out_free;
    }
    if (status != 0) {
        cli__groups_usage(stderr);
        goto out_free;
    }
    if ((status = cli_api_open(&fl, &api)) != 0)
        goto out_free;
    status = cli__groups_ask(api, &a, &answer);
    if (status == 0) {
        if (a.json)
            status = cli_api_print_json(answer, stdout, false) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        else if (strcmp(a.verb, "list") == 0)
            status = cli__groups_table(answer);
        else if (strcmp(a.verb, "delete") == 0)
            printf("group %s deleted; its group points stay until retention ages them out\n", a.group);
        else if (strcmp(a.verb, "round") == 0)
            printf("round %s of group %s started (tidemark groups show %s)\n",
                   cli__s(json_object_get(answer, "round"), "id"), a.group, a.group);
        else
            status = cli__groups_one(answer);
        if (fflush(stdout) != 0)
            status = CLI_EXIT_FAIL;
    }
out_free:
    json_decref(answer);
    cli_api_close(api);
    json_decref(a.settings);
    tm_free(a.machines);
    return status;
}
