/*
 * Replication groups end to end with the real binaries: `tidemark serve`
 * with a group of two machines in its configuration, a replay agent for
 * each, the API (libcurl). Rounds on the group's cadence and on request
 * become group points (each member's point marked multi-VM, the
 * latest-multivm selectors naming them); a member whose agent is gone
 * makes its round abort with a reason naming it, the other member keeps
 * streaming, and rounds record again once it is back; a group naming a machine the appliance does not have
 * stops serve with a clear message.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "tests/agent/at.h"
#include "tests/consistency/ct.h"

#define WAIT_MS 60000

TestSuite(groups, .init = at_setup, .fini = at_teardown, .timeout = 300);

static const json_t *group0(const json_t *groups)
{
    return json_array_get(json_object_get(groups, "groups"), 0);
}

static json_int_t rounds(const char *what)
{
    json_t *g = ct_get_ok("/v1/groups");
    json_int_t n = json_integer_value(json_object_get(json_object_get(group0(g), "rounds"), what));
    json_decref(g);
    return n;
}

static void start_replay(at_child_t *c, const char *addr, const char *machine, const char *secret, unsigned seed)
{
    char spec[160];
    snprintf(spec, sizeof spec, "disks=1,size=32M,rate=2M,bs=4k:70,64k:30,duration=120,seed=%u", seed);
    at_spawn(c, (const char *[]){"agent", "replay", "--server", addr, "--machine", machine, "--secret-file", secret,
                                 "--workload", spec, NULL});
}

static at_child_t srv, a1, a2, bad;

Test(groups, rounds_make_group_points_and_a_missing_member_aborts_one)
{
    const char *data = at_path("data"), *s1 = at_path("s1"), *s2 = at_path("s2"), *conf = at_path("tm.conf");
    at_machine_add(data, "m1", s1);
    at_machine_add(data, "m2", s2);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    /* a generous hold: this checks rounds, not the hold limit, on a busy machine */
    fprintf(f, "group.shop = m1, m2\ngroup.shop.crash_every = 1s\ngroup.shop.hold = 5s\n");
    fclose(f);
    ct_serve(&srv, data, conf);
    cr_assert(strstr(srv.out, "1 replication group"), "%s", srv.out);
    const char *agents = ct_agents;

    start_replay(&a1, agents, "m1", s1, 1);
    start_replay(&a2, agents, "m2", s2, 2);
    /* rounds on the cadence become group points */
    for (int i = 0; i < 600 && rounds("recorded") < 3; i++)
        usleep(100 * 1000);
    json_t *g = ct_get_ok("/v1/groups");
    cr_assert_geq(json_integer_value(json_object_get(json_object_get(group0(g), "rounds"), "recorded")), 3, "%s",
                  json_dumps(g, 0));
    json_decref(g);

    /* one on request, app-consistent (the replay agent has no scripts: it quiesces at once) */
    json_t *j;
    long st = ct_http("/v1/groups/shop/rounds", "{\"kind\":\"app\"}", &j);
    cr_assert(st == 202 || st == 409, "%ld %s", st, json_dumps(j, 0));
    json_decref(j);

    json_t *gp = ct_get_ok("/v1/groups/shop/points");
    const json_t *pts = json_object_get(gp, "points");
    cr_assert_geq(json_array_size(pts), 3, "%s", json_dumps(gp, 0));
    const json_t *newest = json_array_get(pts, 0);
    cr_assert(json_is_true(json_object_get(newest, "whole")), "%s", json_dumps(newest, 0));
    cr_assert_eq(json_array_size(json_object_get(newest, "members")), 2);
    /* each member's part is in its own list, marked multi-VM, and the selector names it
     * (unless a newer round landed in between: then it names that one) */
    for (int m = 0; m < 2; m++) {
        const json_t *mem = json_array_get(json_object_get(newest, "members"), m);
        const char *machine = json_string_value(json_object_get(mem, "machine"));
        const char *id = json_string_value(json_object_get(mem, "point"));
        char path[256];
        snprintf(path, sizeof path, "/v1/machines/%s/points/%s", machine, id);
        json_t *pt = ct_get_ok(path);
        cr_assert(json_is_true(json_object_get(json_object_get(pt, "point"), "multivm")), "%s", json_dumps(pt, 0));
        json_decref(pt);
        snprintf(path, sizeof path, "/v1/machines/%s/points/latest-multivm-processed", machine);
        pt = ct_get_ok(path);
        const char *sel = json_string_value(json_object_get(json_object_get(pt, "point"), "id"));
        cr_assert(sel && strtoull(sel, NULL, 10) >= strtoull(id, NULL, 10), "%s vs %s", sel, id);
        cr_assert(json_is_true(json_object_get(json_object_get(pt, "point"), "multivm")));
        json_decref(pt);
    }
    json_decref(gp);
    json_t *ms = ct_get_ok("/v1/machines");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(ms, "machines"), 0), "group")),
                     "shop");
    json_decref(ms);

    /* fail the whole group over to its newest common group point */
    static at_child_t fo;
    at_spawn(&fo, (const char *[]){"failover", "--group", "shop", "--point", "latest-multivm-processed", "--json",
                                   "--api", ct_api, "--data", data, NULL});
    cr_assert_eq(at_finish(&fo, WAIT_MS), 0, "%s\n%s", fo.out, fo.err);
    const char *last_line = strrchr(fo.out, '{') ? fo.out : "";
    while (strchr(last_line, '\n') && strchr(last_line, '\n')[1])
        last_line = strchr(last_line, '\n') + 1;
    json_t *job = json_loads(last_line, 0, NULL);
    cr_assert_not_null(job, "%s", fo.out);
    const json_t *jms = json_object_get(json_object_get(job, "job"), "machines");
    cr_assert_eq(json_array_size(jms), 2, "%s", fo.out);
    json_t *gp2 = ct_get_ok("/v1/groups/shop/points?limit=50");
    for (size_t m = 0; m < 2; m++) {
        const json_t *jm = json_array_get(jms, m);
        cr_assert_str_eq(json_string_value(json_object_get(jm, "state")), "succeeded");
        const char *pid = json_string_value(json_object_get(json_object_get(jm, "point"), "id"));
        const char *mname = json_string_value(json_object_get(jm, "machine"));
        /* the two points are one group point's members */
        bool found = false;
        for (size_t i = 0; i < json_array_size(json_object_get(gp2, "points")) && !found; i++) {
            const json_t *ms2 = json_object_get(json_array_get(json_object_get(gp2, "points"), i), "members");
            for (size_t k = 0; k < json_array_size(ms2); k++) {
                const json_t *mm = json_array_get(ms2, k);
                found |= strcmp(json_string_value(json_object_get(mm, "machine")), mname) == 0 &&
                         strcmp(json_string_value(json_object_get(mm, "point")), pid) == 0;
            }
        }
        cr_assert(found, "%s failed over to point %s, which is in no group point", mname, pid);
    }
    json_decref(gp2);
    json_decref(job);
    at_child_free(&fo);

    /* m2's agent is gone: the next rounds abort, naming it; m1 streams on */
    at_kill(&a2, SIGKILL);
    at_finish(&a2, WAIT_MS);
    json_int_t aborted = rounds("aborted");
    for (int i = 0; i < 600 && rounds("aborted") <= aborted; i++)
        usleep(100 * 1000);
    g = ct_get_ok("/v1/groups");
    const json_t *last = json_object_get(group0(g), "last_round");
    cr_assert_str_eq(json_string_value(json_object_get(last, "state")), "aborted", "%s", json_dumps(g, 0));
    const char *reason = json_string_value(json_object_get(last, "reason"));
    cr_assert(reason && strstr(reason, "m2"), "%s", json_dumps(last, 0));
    json_decref(g);
    cr_assert(a1.pid > 0, "m1's agent stopped");
    /* m2 is back: rounds make group points again */
    json_int_t recorded = rounds("recorded");
    at_child_free(&a2);
    start_replay(&a2, agents, "m2", s2, 2);
    for (int i = 0; i < 600 && rounds("recorded") <= recorded; i++)
        usleep(100 * 1000);
    cr_assert_gt(rounds("recorded"), recorded, "no group point after m2 came back");
    at_kill(&a1, SIGKILL);
    at_finish(&a1, WAIT_MS);
    at_kill(&a2, SIGKILL);
    at_finish(&a2, WAIT_MS);
    kill(srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&srv, WAIT_MS), 0, "%s", srv.err);
}

Test(groups, a_group_with_a_machine_the_appliance_does_not_have_is_refused)
{
    const char *data = at_path("data"), *s1 = at_path("s1"), *conf = at_path("tm.conf");
    at_machine_add(data, "m1", s1);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f, "group.shop = m1, elsewhere\n");
    fclose(f);
    ct_serve_spawn(&bad, data, conf);
    int code = at_finish(&bad, WAIT_MS);
    cr_assert_neq(code, 0);
    cr_assert(strstr(bad.err, "group shop: machine elsewhere is not on this appliance"), "%s", bad.err);
    at_child_free(&bad);
    f = fopen(conf, "w");
    fprintf(f, "group.a = m1\ngroup.b = m1\n");
    fclose(f);
    ct_serve_spawn(&bad, data, conf);
    code = at_finish(&bad, WAIT_MS);
    cr_assert_neq(code, 0);
    cr_assert(strstr(bad.err, "machine m1 is in two groups"), "%s", bad.err);
    at_child_free(&bad);
}
