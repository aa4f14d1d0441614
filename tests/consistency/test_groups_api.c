/*
 * Replication groups made, changed and deleted through the API while
 * `tidemark serve` runs, with replay agents streaming: a group made by
 * POST runs rounds at once; a PATCH adds a member, whose next rounds take
 * it in; the groups survive a SIGKILL of the appliance (DATA/groups.json);
 * DELETE stops the rounds and frees the members for another group. Bad
 * definitions, unknown machines, a machine in two groups and changes of a
 * group of the configuration file are each refused with their code, and
 * a damaged groups file stops serve naming it.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/agent/at.h"
#include "tests/consistency/ct.h"

#define WAIT_MS 60000

TestSuite(groups_api, .init = at_setup, .fini = at_teardown, .timeout = 300);

static at_child_t srv, ag[4], bad;

static void start_replay(at_child_t *c, const char *machine, const char *secret, unsigned seed)
{
    char spec[160];
    snprintf(spec, sizeof spec, "disks=1,size=16M,rate=1M,bs=4k,duration=120,seed=%u", seed);
    at_spawn(c, (const char *[]){"agent", "replay", "--server", ct_agents, "--machine", machine, "--secret-file",
                                 secret, "--workload", spec, NULL});
}

/* The answer's status, asserted; the answer freed. */
static void expect(const char *method, const char *path, const char *body, long want, const char *code)
{
    json_t *j;
    long st = ct_request(method, path, body, &j);
    cr_assert_eq(st, want, "%s %s %s: %ld %s", method, path, body ? body : "", st, json_dumps(j, 0));
    if (code)
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")), code, "%s %s: %s",
                         method, path, json_dumps(j, 0));
    json_decref(j);
}

static json_int_t recorded(const char *group)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    json_t *g = ct_get_ok(path);
    json_int_t n = json_integer_value(json_object_get(json_object_get(json_object_get(g, "group"), "rounds"),
                                                      "recorded"));
    json_decref(g);
    return n;
}

static void wait_recorded(const char *group, json_int_t more_than)
{
    for (int i = 0; i < 600 && recorded(group) <= more_than; i++)
        usleep(100 * 1000);
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    json_t *g = ct_get_ok(path);
    cr_assert_gt(recorded(group), more_than, "group %s made no group point: %s", group, json_dumps(g, 0));
    json_decref(g);
}

/* The members of the newest group point of group, as "m1,m2,". */
static void newest_members(const char *group, char *out, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s/points?limit=1", group);
    json_t *gp = ct_get_ok(path);
    const json_t *ms = json_object_get(json_array_get(json_object_get(gp, "points"), 0), "members");
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(ms); i++) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s,", json_string_value(json_object_get(json_array_get(ms, i), "machine")));
    }
    json_decref(gp);
}

static const char *machine_group(const char *machine)
{
    static char out[64];
    json_t *ms = ct_get_ok("/v1/machines");
    out[0] = '\0';
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(ms, "machines"), i, m) {
        const char *grp = json_string_value(json_object_get(m, "group"));
        if (strcmp(json_string_value(json_object_get(m, "name")), machine) == 0)
            snprintf(out, sizeof out, "%s", grp ? grp : "(none)");
    }
    json_decref(ms);
    return out;
}

Test(groups_api, make_change_restart_and_delete_while_rounds_run)
{
    char data[512], conf[512], s[4][512];
    snprintf(data, sizeof data, "%s", at_path("data"));
    snprintf(conf, sizeof conf, "%s", at_path("tm.conf"));
    const char *names[4] = {"c1", "m1", "m2", "m3"};
    for (int i = 0; i < 4; i++) {
        snprintf(s[i], sizeof s[i], "%s", at_path(names[i]));
        at_machine_add(data, names[i], s[i]);
    }
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f, "group.conf = c1\ngroup.conf.crash_every = off\n");
    fclose(f);
    ct_serve(&srv, data, conf);
    for (int i = 1; i < 4; i++)
        start_replay(&ag[i], names[i], s[i], (unsigned)i);

    /* bad definitions: each refused with its code, nothing made */
    expect("POST", "/v1/groups", "{\"members\":[\"m1\"]}", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[]}", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\",\"m1\"]}", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\"],\"hold_ms\":0}", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\"],\"crash_every_seconds\":0.5}", 400,
           "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\"],\"colour\":\"red\"}", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"../g\",\"members\":[\"m1\"]}", 400, "bad-request");
    expect("POST", "/v1/groups", "[1,2]", 400, "bad-request");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\",\"elsewhere\"]}", 404, "unknown-machine");
    expect("POST", "/v1/groups", "{\"name\":\"g\",\"members\":[\"m1\",\"c1\"]}", 409, "conflict");
    expect("POST", "/v1/groups", "{\"name\":\"conf\",\"members\":[\"m1\"]}", 409, "conflict");
    expect("PATCH", "/v1/groups/conf", "{\"hold_ms\":200}", 409, "conflict");
    expect("DELETE", "/v1/groups/conf", NULL, 409, "conflict");
    expect("PATCH", "/v1/groups/nosuch", "{\"hold_ms\":200}", 404, "unknown-group");
    expect("DELETE", "/v1/groups/nosuch", NULL, 404, "unknown-group");
    json_t *gs = ct_get_ok("/v1/groups");
    cr_assert_eq(json_array_size(json_object_get(gs, "groups")), 1, "%s", json_dumps(gs, 0));
    json_decref(gs);

    /* made: rounds at once on its cadence, its members show it */
    json_t *j;
    long st = ct_request("POST", "/v1/groups",
                         "{\"name\":\"shop\",\"members\":[\"m1\",\"m2\"],\"crash_every_seconds\":1,\"hold_ms\":5000}",
                         &j);
    cr_assert_eq(st, 201, "%ld %s", st, json_dumps(j, 0));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "group"), "source")), "api");
    json_decref(j);
    expect("POST", "/v1/groups", "{\"name\":\"shop\",\"members\":[\"m3\"]}", 409, "conflict");
    /* on disk with every setting written out */
    char gpath[600];
    snprintf(gpath, sizeof gpath, "%s/groups.json", data);
    json_t *file = json_load_file(gpath, 0, NULL);
    cr_assert_not_null(file);
    const json_t *fg = json_array_get(json_object_get(file, "groups"), 0);
    cr_assert_eq(json_integer_value(json_object_get(file, "version")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(fg, "name")), "shop");
    cr_assert_eq(json_integer_value(json_object_get(fg, "app_hold_ms")), 10000, "%s", json_dumps(file, 0));
    cr_assert_eq(json_integer_value(json_object_get(fg, "hold_ms")), 5000);
    json_decref(file);
    cr_assert_str_eq(machine_group("m1"), "shop");
    wait_recorded("shop", 0);
    char members[256];
    newest_members("shop", members, sizeof members);
    cr_assert_str_eq(members, "m1,m2,");

    /* changed: m3 joins; a rename is refused */
    expect("PATCH", "/v1/groups/shop", "{\"name\":\"other\"}", 400, "bad-request");
    expect("PATCH", "/v1/groups/shop", "{\"hold_ms\":-1}", 400, "bad-request");
    st = ct_request("PATCH", "/v1/groups/shop", "{\"members\":[\"m1\",\"m2\",\"m3\"]}", &j);
    cr_assert_eq(st, 200, "%ld %s", st, json_dumps(j, 0));
    const json_t *g = json_object_get(j, "group");
    cr_assert_eq(json_array_size(json_object_get(g, "members")), 3);
    cr_assert_eq(json_integer_value(json_object_get(g, "hold_ms")), 5000, "a change keeps what it does not name");
    json_decref(j);
    json_int_t before = recorded("shop");
    wait_recorded("shop", before);
    newest_members("shop", members, sizeof members);
    cr_assert_str_eq(members, "m1,m2,m3,");
    json_t *pt = ct_get_ok("/v1/machines/m3/points/latest-multivm-processed");
    cr_assert(json_is_true(json_object_get(json_object_get(pt, "point"), "multivm")), "%s", json_dumps(pt, 0));
    json_decref(pt);

    /* a SIGKILL of the appliance: the group is back as it was */
    at_kill(&srv, SIGKILL);
    at_finish(&srv, WAIT_MS);
    at_child_free(&srv);
    ct_serve(&srv, data, conf);
    cr_assert(strstr(srv.out, "2 replication groups"), "%s", srv.out);
    json_t *sg = ct_get_ok("/v1/groups/shop");
    cr_assert_eq(json_array_size(json_object_get(json_object_get(sg, "group"), "members")), 3, "%s",
                 json_dumps(sg, 0));
    json_decref(sg);
    for (int i = 1; i < 4; i++) { /* the new serve listens on a new port: agents pointed at it */
        at_kill(&ag[i], SIGKILL);
        at_finish(&ag[i], WAIT_MS);
        at_child_free(&ag[i]);
        start_replay(&ag[i], names[i], s[i], (unsigned)i + 10);
    }
    wait_recorded("shop", 0);

    /* deleted: no more rounds, its members are free for another group */
    expect("DELETE", "/v1/groups/shop", NULL, 200, NULL);
    expect("GET", "/v1/groups/shop", NULL, 404, "unknown-group");
    cr_assert_str_eq(machine_group("m1"), "(none)");
    pt = ct_get_ok("/v1/machines/m1/points/latest-multivm-processed");
    json_decref(pt);
    st = ct_request("POST", "/v1/groups", "{\"name\":\"pair\",\"members\":[\"m1\",\"m3\"],\"crash_every_seconds\":1}",
                    &j);
    cr_assert_eq(st, 201, "%ld %s", st, json_dumps(j, 0));
    json_decref(j);
    wait_recorded("pair", 0);
    newest_members("pair", members, sizeof members);
    cr_assert_str_eq(members, "m1,m3,");

    /* and after a clean restart only what is left */
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
    at_child_free(&srv);
    ct_serve(&srv, data, conf);
    gs = ct_get_ok("/v1/groups");
    cr_assert_eq(json_array_size(json_object_get(gs, "groups")), 2, "%s", json_dumps(gs, 0));
    json_decref(gs);
    expect("GET", "/v1/groups/shop", NULL, 404, "unknown-group");
    expect("GET", "/v1/groups/pair", NULL, 200, NULL);
    for (int i = 1; i < 4; i++) {
        at_kill(&ag[i], SIGKILL);
        at_finish(&ag[i], WAIT_MS);
    }
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
}

Test(groups_api, a_damaged_groups_file_stops_serve_naming_it)
{
    char data[512], conf[512], gpath[600];
    snprintf(data, sizeof data, "%s", at_path("data"));
    snprintf(conf, sizeof conf, "%s", at_path("tm.conf"));
    at_machine_add(data, "m1", at_path("s1"));
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(gpath, sizeof gpath, "%s/groups.json", data);
    const char *bad_files[] = {
        "{\"version\": 1, \"groups\": [{\"name\": \"g\", \"members\": [\"m1\"]}",  /* torn */
        "{\"version\": 2, \"groups\": []}",                                         /* a newer format */
        "{\"version\": 1, \"groups\": [{\"name\": \"g\", \"members\": [\"nobody\"]}]}", /* not a machine here */
    };
    const char *says[] = {"groups.json", "version 2", "machine nobody is not on this appliance"};
    for (int i = 0; i < 3; i++) {
        f = fopen(gpath, "w");
        cr_assert_not_null(f);
        fputs(bad_files[i], f);
        fclose(f);
        ct_serve_spawn(&bad, data, conf);
        cr_assert_neq(at_finish(&bad, WAIT_MS), 0, "serve started on a bad groups file: %s", bad_files[i]);
        cr_assert(strstr(bad.err, says[i]), "%s", bad.err);
        at_child_free(&bad);
    }
}

/* `tidemark groups ARGS... --api A --data D`: its exit status, its output in c. */
static int groups_cmd(at_child_t *c, const char *data, const char *const *args)
{
    const char *argv[24] = {"groups"};
    size_t n = 1;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n++] = "--api";
    argv[n++] = ct_api;
    argv[n++] = "--data";
    argv[n++] = data;
    argv[n] = NULL;
    at_spawn(c, argv);
    return at_finish(c, WAIT_MS);
}

/* The command line over the same API, and the groups' figures in /metrics. */
Test(groups_api, the_groups_command_and_metrics)
{
    char data[512], conf[512], s1[512], s2[512];
    snprintf(data, sizeof data, "%s", at_path("data"));
    snprintf(conf, sizeof conf, "%s", at_path("tm.conf"));
    snprintf(s1, sizeof s1, "%s", at_path("s1"));
    snprintf(s2, sizeof s2, "%s", at_path("s2"));
    at_machine_add(data, "m1", s1);
    at_machine_add(data, "m2", s2);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fclose(f);
    ct_serve(&srv, data, conf);
    start_replay(&ag[1], "m1", s1, 1);
    start_replay(&ag[2], "m2", s2, 2);
    static at_child_t c;

    cr_assert_eq(groups_cmd(&c, data, (const char *[]){NULL}), 0, "%s", c.err);
    cr_assert(strstr(c.out, "no replication groups"), "%s", c.out);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"add", "shop", "m1", "m2", "--crash-every", "1s", "--hold",
                                                       "5s", "--app-every", "off", NULL}),
                 0, "%s", c.err);
    cr_assert(strstr(c.out, "members   m1,m2") && strstr(c.out, "hold up to 5000 ms") &&
                  strstr(c.out, "on request only"),
              "%s", c.out);
    at_child_free(&c);
    /* refusals: exit 1 with the appliance's reason, 2 for the command's own */
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"add", "two", "m1", NULL}), 1);
    cr_assert(strstr(c.err, "machine m1 is in group shop already"), "%s", c.err);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"add", "shop", "m1", "--hold", "soon", NULL}), 2);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"set", "shop", NULL}), 2);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"show", "nosuch", NULL}), 1);
    cr_assert(strstr(c.err, "unknown-group"), "%s", c.err);
    at_child_free(&c);

    wait_recorded("shop", 0);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"round", "shop", "--app", NULL}), 0, "%s", c.err);
    cr_assert(strstr(c.out, "started"), "%s", c.out);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"list", NULL}), 0, "%s", c.err);
    cr_assert(strstr(c.out, "shop") && strstr(c.out, "m1,m2") && strstr(c.out, "api"), "%s", c.out);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"show", "shop", NULL}), 0, "%s", c.err);
    cr_assert(strstr(c.out, "ROUND") && strstr(c.out, "recorded"), "%s", c.out);
    at_child_free(&c);

    char *m = ct_get_text("/metrics");
    cr_assert(strstr(m, "tidemark_group_members{group=\"shop\"} 2"), "%s", m);
    const char *rec = strstr(m, "tidemark_group_rounds_total{group=\"shop\",outcome=\"recorded\"} ");
    cr_assert(rec && strtoull(rec + strlen("tidemark_group_rounds_total{group=\"shop\",outcome=\"recorded\"} "), NULL,
                              10) >= 1,
              "%s", m);
    cr_assert(strstr(m, "tidemark_group_round_seconds{group=\"shop\"}") &&
                  strstr(m, "tidemark_group_point_age_seconds{group=\"shop\"}"),
              "%s", m);
    free(m);

    /* m1 fails over for good: the group's rounds name it as retired */
    static at_child_t fo;
    at_spawn(&fo, (const char *[]){"failover", "m1", "--point", "latest-processed", "--api", ct_api, "--data", data,
                                   NULL});
    cr_assert_eq(at_finish(&fo, WAIT_MS), 0, "%s\n%s", fo.out, fo.err);
    at_child_free(&fo);
    at_spawn(&fo, (const char *[]){"commit", "m1", "--api", ct_api, "--data", data, NULL});
    cr_assert_eq(at_finish(&fo, WAIT_MS), 0, "%s\n%s", fo.out, fo.err);
    at_child_free(&fo);
    bool named = false;
    for (int i = 0; i < 300 && !named; i++) {
        json_t *sg = ct_get_ok("/v1/groups/shop");
        const char *reason =
            json_string_value(json_object_get(json_object_get(json_object_get(sg, "group"), "last_round"), "reason"));
        named = reason && strstr(reason, "member m1: it was retired");
        json_decref(sg);
        if (!named)
            usleep(100 * 1000);
    }
    cr_assert(named, "no round named m1 as retired");
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"set", "shop", "m2", NULL}), 0, "%s", c.err);
    cr_assert(strstr(c.out, "members   m2\n"), "%s", c.out);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"delete", "shop", NULL}), 0, "%s", c.err);
    at_child_free(&c);
    cr_assert_eq(groups_cmd(&c, data, (const char *[]){"--json", NULL}), 0, "%s", c.err);
    json_t *j = json_loads(c.out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(j, "groups")), 0, "%s", c.out);
    json_decref(j);
    at_child_free(&c);
    for (int i = 1; i < 3; i++) {
        at_kill(&ag[i], SIGKILL);
        at_finish(&ag[i], WAIT_MS);
    }
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
}
