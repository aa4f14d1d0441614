/*
 * The API's client commands (status, points, materialize) run as the real
 * `tidemark` binary against a fake appliance (fake_api.h) answering canned
 * JSON: tables, --json, error objects, an appliance that is not there, a
 * missing token, and a materialize job watched through to its end.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/cli/fake_api.h"
#include "tests/cli/helpers.h"

#define TOKEN "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define APPLIANCE "\"appliance\":\"00112233aabbccdd\""

static const char health_body[] = "{" APPLIANCE ",\"status\":\"ok\",\"version\":\"0.1.0-test\"}";

static const char machines_body[] =
    "{" APPLIANCE ",\"machines\":["
    "{\"name\":\"db1\",\"state\":\"registered\",\"connected\":false,\"disks\":[],"
    "\"received_seq\":0,\"processed_seq\":0,\"lag_bytes\":0,\"lag_seconds\":0.0,"
    "\"rpo_seconds\":null,\"latest_point\":null},"
    "{\"name\":\"web1\",\"state\":\"protected\",\"connected\":true,"
    "\"disks\":[{\"name\":\"disk0\",\"size\":1073741824,\"synced\":true},"
    "{\"name\":\"disk1\",\"size\":536870912,\"synced\":true}],"
    "\"received_seq\":5120,\"processed_seq\":5003,\"lag_bytes\":1572864,\"lag_seconds\":0.4,"
    "\"rpo_seconds\":0.8,\"latest_point\":{\"id\":\"5003\",\"seq\":5003,"
    "\"time\":\"2026-11-27T10:00:01.123456789Z\",\"kind\":\"app\",\"tag\":\"nightly\"}}]}";

static const char points_body[] =
    "{" APPLIANCE ",\"machine\":\"web1\",\"points\":["
    "{\"id\":\"1042\",\"seq\":1042,\"time\":\"2026-11-27T10:00:02.000000000Z\",\"kind\":\"app\","
    "\"tag\":\"before-upgrade\"},"
    "{\"id\":\"977\",\"seq\":977,\"time\":\"2026-11-27T10:00:01.500000000Z\",\"kind\":\"crash\",\"tag\":null}]}";

static const char no_machine_body[] =
    "{" APPLIANCE ",\"error\":{\"code\":\"unknown-machine\","
    "\"message\":\"no machine named 'web9' is registered on this appliance\"}}";

#define JOB_HEAD "{" APPLIANCE ",\"job\":{\"id\":\"7\",\"action\":\"materialize\",\"machine\":\"web1\","
#define JOB_POINT \
    "\"point\":{\"id\":\"1042\",\"seq\":1042,\"time\":\"2026-11-27T10:00:02.000000000Z\","  \
    "\"kind\":\"app\",\"tag\":\"x\"},"

static const char job_created[] = JOB_HEAD "\"state\":\"running\",\"created\":\"2026-11-27T10:01:00Z\","
                                           "\"finished\":null," JOB_POINT
                                           "\"progress\":{\"done_bytes\":0,\"total_bytes\":1000},"
                                           "\"files\":[],\"error\":null}}";
static const char job_half[] = JOB_HEAD "\"state\":\"running\",\"created\":\"2026-11-27T10:01:00Z\","
                                        "\"finished\":null," JOB_POINT
                                        "\"progress\":{\"done_bytes\":500,\"total_bytes\":1000},"
                                        "\"files\":[],\"error\":null}}";
static const char job_done[] = JOB_HEAD "\"state\":\"succeeded\",\"created\":\"2026-11-27T10:01:00Z\","
                                        "\"finished\":\"2026-11-27T10:01:01Z\"," JOB_POINT
                                        "\"progress\":{\"done_bytes\":1000,\"total_bytes\":1000},"
                                        "\"files\":[\"/o/disk0.raw\",\"/o/disk1.raw\"],\"error\":null}}";
static const char job_failed[] = JOB_HEAD "\"state\":\"failed\",\"created\":\"2026-11-27T10:01:00Z\","
                                          "\"finished\":\"2026-11-27T10:01:01Z\"," JOB_POINT
                                          "\"progress\":{\"done_bytes\":500,\"total_bytes\":1000},"
                                          "\"files\":[],\"error\":{\"code\":\"internal\","
                                          "\"message\":\"extent checksum mismatch in disk0 at 4096\"}}}";

static void client_setup(void)
{
    tc_setup();
    cr_assert_eq(mkdir(tc_path("data"), 0700), 0);
    tc_write_file(tc_path("data/api.token"), TOKEN "\n");
}

TestSuite(client, .init = client_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

/* Run tidemark with args followed by --api ADDR --data DIR. */
static int run_client(tc_child_t *c, const fake_api_t *fa, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    for (; args[n]; n++)
        argv[n] = args[n];
    argv[n++] = "--api";
    argv[n++] = fa_addr(fa);
    argv[n++] = "--data";
    argv[n++] = tc_path("data");
    argv[n] = NULL;
    return tc_run(c, argv);
}

static void assert_json_eq(const char *text, const char *expected)
{
    json_error_t e1, e2;
    json_t *a = json_loads(text, 0, &e1);
    json_t *b = json_loads(expected, 0, &e2);
    cr_assert_not_null(a, "not JSON (%s): %s", e1.text, text);
    cr_assert_not_null(b, "expected is not JSON (%s)", e2.text);
    cr_assert(json_equal(a, b), "JSON differs:\n%s\nexpected:\n%s", text, expected);
    json_decref(a);
    json_decref(b);
}

Test(client, status_prints_a_table_and_sends_the_token)
{
    const fa_route_t routes[] = {
        {"GET", "/v1/health", 200, health_body, 0},
        {"GET", "/v1/machines", 200, machines_body, 0},
    };
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"status", NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    cr_assert_str_eq(c.err, "");

    char expected[2048];
    snprintf(expected, sizeof expected,
             "appliance 00112233aabbccdd  version 0.1.0-test  api %s\n"
             "\n"
             "MACHINE  STATE       AGENT      DISKS        RECEIVED  PROCESSED  LAG             RPO    "
             "LATEST POINT\n"
             "db1      registered  offline    0                   0          0  0 B, 0.0 s      -      -\n"
             "web1     protected   connected  2 (1.5 GiB)      5120       5003  1.5 MiB, 0.4 s  0.8 s  "
             "2026-11-27T10:00:01.123Z app nightly\n",
             fa_addr(fa));
    cr_assert_str_eq(c.out, expected);

    cr_assert_eq(fa_count(fa), 2);
    fa_request_t h = fa_request(fa, 0), m = fa_request(fa, 1);
    cr_assert_str_eq(h.target, "/v1/health");
    cr_assert_str_eq(m.method, "GET");
    cr_assert_str_eq(m.target, "/v1/machines");
    cr_assert_str_eq(m.authorization, "Bearer " TOKEN);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, status_json_is_the_appliance_answer_indented)
{
    const fa_route_t routes[] = {{"GET", "/v1/machines", 200, machines_body, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"status", "--json", NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    assert_json_eq(c.out, machines_body);
    cr_assert(strstr(c.out, "\n  \"machines\": ["), "not indented: %s", c.out);
    /* What the appliance sent, not a double spelled out to 17 digits. */
    cr_assert(strstr(c.out, "\"rpo_seconds\": 0.8,"), "stdout: %s", c.out);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, points_table_newest_first_with_the_filters_in_the_query)
{
    const fa_route_t routes[] = {
        {"GET", "/v1/machines/web1/points?kind=app&since=2026-11-27T10%3A00%3A00Z&limit=5", 200, points_body, 0},
    };
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa,
                          (const char *[]){"points", "web1", "--kind", "app", "--since", "2026-11-27T10:00:00Z",
                                           "--limit=5", NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    cr_assert_str_eq(c.out, "  ID  TIME                      KIND   TAG\n"
                            "1042  2026-11-27T10:00:02.000Z  app    before-upgrade\n"
                            " 977  2026-11-27T10:00:01.500Z  crash  -\n");
    cr_assert_str_eq(fa_request(fa, 0).authorization, "Bearer " TOKEN);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, points_json_is_the_appliance_answer)
{
    const fa_route_t routes[] = {{"GET", "/v1/machines/web1/points", 200, points_body, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"points", "--json", "web1", NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    assert_json_eq(c.out, points_body);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, api_error_object_is_one_line_with_its_code)
{
    const fa_route_t routes[] = {{"GET", "/v1/machines/web9/points", 404, no_machine_body, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"points", "web9", NULL});
    cr_assert_eq(code, 1, "exit %d", code);
    cr_assert_str_eq(c.err, "tidemark: no machine named 'web9' is registered on this appliance (unknown-machine)\n");
    cr_assert_str_eq(c.out, "");
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, an_appliance_that_is_not_there_is_named)
{
    /* A bound socket that does not listen: connecting to it is refused,
     * and no other process can take the port meanwhile. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    cr_assert_eq(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));

    const char *const *cases[] = {
        (const char *[]){"status", "--api", addr, "--data", tc_path("data"), NULL},
        (const char *[]){"points", "web1", "--api", addr, "--data", tc_path("data"), NULL},
        (const char *[]){"materialize", "web1", "--point", "latest", "--out", tc_path("o"), "--api", addr,
                         "--data", tc_path("data"), NULL},
    };
    char expected[256];
    snprintf(expected, sizeof expected,
             "tidemark: cannot reach the appliance at %s: Connection refused (is `tidemark serve` running?)\n", addr);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, cases[i]);
        cr_assert_eq(code, 1, "case %zu: exit %d", i, code);
        cr_assert_str_eq(c.err, expected, "case %zu", i);
        tc_child_free(&c);
    }
    close(s);
}

Test(client, a_missing_token_names_its_file)
{
    const fa_route_t routes[] = {{"GET", "/v1/machines", 200, machines_body, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    cr_assert_eq(unlink(tc_path("data/api.token")), 0);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"status", NULL});
    cr_assert_eq(code, 1);
    cr_assert(strstr(c.err, tc_path("data/api.token")), "stderr: %s", c.err);
    cr_assert(strstr(c.err, "does not exist") && strstr(c.err, "first start"), "stderr: %s", c.err);
    cr_assert_eq(tc_count_lines_with(c.err, "tidemark:"), 1, "stderr: %s", c.err);
    cr_assert_eq(fa_count(fa), 0);
    tc_child_free(&c);

    /* An empty file is no token either. */
    tc_write_file(tc_path("data/api.token"), "\n");
    code = run_client(&c, fa, (const char *[]){"status", NULL});
    cr_assert_eq(code, 1);
    cr_assert(strstr(c.err, "does not hold a token"), "stderr: %s", c.err);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, config_file_names_the_api_and_the_data_folder)
{
    const fa_route_t routes[] = {{"GET", "/v1/machines", 200, machines_body, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    char text[256];
    /* A relative data folder is relative to the config file's folder. */
    snprintf(text, sizeof text, "api = %s\ndata = data\n", fa_addr(fa));
    tc_write_file(tc_path("tidemark.conf"), text);
    tc_child_t c;
    int code = tc_run(&c, (const char *[]){"status", "--json", "--config", tc_path("tidemark.conf"), NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    assert_json_eq(c.out, machines_body);
    tc_child_free(&c);

    tc_write_file(tc_path("bad.conf"), "api = not-an-address\n");
    code = tc_run(&c, (const char *[]){"status", "--config", tc_path("bad.conf"), NULL});
    cr_assert_eq(code, 2);
    cr_assert(strstr(c.err, "bad.conf:1: 'not-an-address' is not an address"), "stderr: %s", c.err);
    tc_child_free(&c);
    fa_stop(fa);
}

/* The lines of text, each parsed as a JSON object, into out (at most max). */
static size_t json_lines(const char *text, json_t **out, size_t max)
{
    size_t n = 0;
    const char *line = text;
    while (*line && n < max) {
        const char *end = strchr(line, '\n');
        cr_assert_not_null(end, "unterminated line: %s", line);
        json_error_t e;
        out[n] = json_loadb(line, (size_t)(end - line), 0, &e);
        cr_assert(json_is_object(out[n]), "not a JSON object (%s): %.*s", e.text, (int)(end - line), line);
        n++;
        line = end + 1;
    }
    return n;
}

static const fa_route_t materialize_ok[] = {
    {"GET", "/v1/health", 200, health_body, 0},
    {"POST", "/v1/jobs", 201, job_created, 0},
    {"GET", "/v1/jobs/7", 200, job_created, 1},
    {"GET", "/v1/jobs/7", 200, job_half, 1},
    {"GET", "/v1/jobs/7", 200, job_done, 0},
};

Test(client, materialize_watches_the_job_to_success)
{
    fake_api_t *fa = fa_start(materialize_ok, sizeof materialize_ok / sizeof materialize_ok[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"materialize", "web1", "--point", "latest-app", "--out",
                                                   tc_path("out"), NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);

    /* The folder was made, and the appliance was given its real path. */
    char abs[PATH_MAX];
    cr_assert(tc_is_dir(tc_path("out")));
    cr_assert_not_null(realpath(tc_path("out"), abs));
    cr_assert_str_eq(fa_request(fa, 0).target, "/v1/health");
    fa_request_t post = fa_request(fa, 1);
    cr_assert_str_eq(post.method, "POST");
    cr_assert_str_eq(post.target, "/v1/jobs");
    cr_assert_str_eq(post.authorization, "Bearer " TOKEN);
    cr_assert_str_eq(post.content_type, "application/json");
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want,
             "{\"action\":\"materialize\",\"machine\":\"web1\",\"point\":\"latest-app\",\"out\":\"%s\"}", abs);
    assert_json_eq(post.body, want);
    cr_assert_eq(fa_count(fa), 5);
    for (size_t i = 2; i < 5; i++)
        cr_assert_str_eq(fa_request(fa, i).authorization, "Bearer " TOKEN);

    /* stderr: the folder note, then one JSON line per change of progress. */
    char note[PATH_MAX + 64];
    snprintf(note, sizeof note, "tidemark: created the folder %s\n", abs);
    cr_assert_eq(strncmp(c.err, note, strlen(note)), 0, "stderr: %s", c.err);
    json_t *lines[8];
    size_t n = json_lines(c.err + strlen(note), lines, 8);
    cr_assert_eq(n, 3, "stderr: %s", c.err);
    const json_int_t done[] = {0, 500, 1000};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(json_integer_value(json_object_get(lines[i], "done_bytes")), done[i], "line %zu", i);
        cr_assert_eq(json_integer_value(json_object_get(lines[i], "total_bytes")), 1000);
        cr_assert(json_object_get(lines[i], "eta_seconds"));
        json_decref(lines[i]);
    }

    snprintf(want, sizeof want, "materialized web1 at point 1042 (app, 2026-11-27T10:00:02.000000000Z) into %s in ",
             abs);
    cr_assert_eq(strncmp(c.out, want, strlen(want)), 0, "stdout: %s", c.out);
    cr_assert(strstr(c.out, " s:\n  /o/disk0.raw\n  /o/disk1.raw\n"), "stdout: %s", c.out);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, materialize_json_gives_progress_lines_then_the_job)
{
    cr_assert_eq(mkdir(tc_path("out"), 0700), 0);
    fake_api_t *fa = fa_start(materialize_ok, sizeof materialize_ok / sizeof materialize_ok[0]);
    tc_child_t c;
    int code = run_client(
        &c, fa, (const char *[]){"materialize", "web1", "--point", "1042", "--out", tc_path("out"), "--json", NULL});
    cr_assert_eq(code, 0, "exit %d, stderr: %s", code, c.err);
    cr_assert_str_eq(c.err, ""); /* the folder existed: nothing to say */
    json_t *lines[8];
    size_t n = json_lines(c.out, lines, 8);
    cr_assert_eq(n, 4, "stdout: %s", c.out);
    for (size_t i = 0; i < 3; i++) {
        cr_assert(json_is_integer(json_object_get(lines[i], "done_bytes")), "line %zu", i);
        json_decref(lines[i]);
    }
    char *last = json_dumps(lines[3], JSON_COMPACT);
    assert_json_eq(last, job_done);
    free(last);
    json_decref(lines[3]);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, a_failed_job_exits_nonzero_with_its_message)
{
    const fa_route_t routes[] = {
        {"GET", "/v1/health", 200, health_body, 0},
        {"POST", "/v1/jobs", 201, job_created, 0},
        {"GET", "/v1/jobs/7", 200, job_half, 1},
        {"GET", "/v1/jobs/7", 200, job_failed, 0},
    };
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"materialize", "web1", "--point", "latest", "--out",
                                                   tc_path("out"), NULL});
    cr_assert_eq(code, 1, "exit %d, stderr: %s", code, c.err);
    cr_assert(strstr(c.err, "tidemark: materialize of web1 failed (job 7): extent checksum mismatch in disk0 at "
                            "4096 (internal)\n"),
              "stderr: %s", c.err);
    cr_assert_str_eq(c.out, "");
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, a_bad_selector_is_a_usage_error)
{
    static const char bad[] = "{" APPLIANCE ",\"error\":{\"code\":\"bad-selector\",\"message\":\"'yesterday' is not "
                              "a point selector\"}}";
    const fa_route_t routes[] = {{"GET", "/v1/health", 200, health_body, 0}, {"POST", "/v1/jobs", 400, bad, 0}};
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    int code = run_client(&c, fa, (const char *[]){"materialize", "web1", "--point", "yesterday", "--out",
                                                   tc_path("out"), NULL});
    cr_assert_eq(code, 2, "exit %d, stderr: %s", code, c.err);
    cr_assert(strstr(c.err, "tidemark: 'yesterday' is not a point selector (bad-selector)\n"), "stderr: %s", c.err);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, ctrl_c_leaves_the_job_running)
{
    const fa_route_t routes[] = {
        {"GET", "/v1/health", 200, health_body, 0},
        {"POST", "/v1/jobs", 201, job_created, 0},
        {"GET", "/v1/jobs/7", 200, job_half, 0},
    };
    fake_api_t *fa = fa_start(routes, sizeof routes / sizeof routes[0]);
    tc_child_t c;
    tc_spawn(&c, NULL,
             (const char *[]){"materialize", "web1", "--point", "latest", "--out", tc_path("out"), "--api",
                              fa_addr(fa), "--data", tc_path("data"), NULL});
    /* Wait for the watching to have begun: the health check, the POST and
     * one GET of the job. */
    struct timespec deadline, now;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 20;
    while (fa_count(fa) < 3) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert(now.tv_sec < deadline.tv_sec, "the job was never asked about");
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(kill(c.pid, SIGINT), 0);
    int code = tc_finish(&c);
    cr_assert_eq(code, 130, "exit %d, stderr: %s", code, c.err);
    cr_assert(strstr(c.err, "tidemark: stopped watching; job 7 continues on the appliance"), "stderr: %s", c.err);
    tc_child_free(&c);
    fa_stop(fa);
}

Test(client, usage_errors)
{
    const char *const *cases[] = {
        (const char *[]){"status", "extra", NULL},
        (const char *[]){"status", "--frob", NULL},
        (const char *[]){"status", "--api", NULL},
        (const char *[]){"points", NULL},
        (const char *[]){"points", "web1", "--kind", "weekly", NULL},
        (const char *[]){"points", "web1", "--limit", "0", NULL},
        (const char *[]){"points", "web1", "--limit", "100001", NULL},
        (const char *[]){"points", "web1", "web2", NULL},
        (const char *[]){"materialize", "web1", "--out", "x", NULL},
        (const char *[]){"materialize", "web1", "--point", "latest", NULL},
        (const char *[]){"materialize", "--point", "latest", "--out", "x", NULL},
        (const char *[]){"status", "--api", "somewhere", NULL},
    };
    const char *usage[] = {"status", "status", "status", "points", "points", "points",
                           "points", "points", "materialize", "materialize", "materialize", NULL};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, cases[i]);
        cr_assert_eq(code, 2, "case %zu: exit %d, stderr: %s", i, code, c.err);
        cr_assert_str_eq(c.out, "", "case %zu", i);
        if (usage[i]) {
            char want[64];
            snprintf(want, sizeof want, "usage: tidemark %s", usage[i]);
            cr_assert(strstr(c.err, want), "case %zu: stderr: %s", i, c.err);
        } else {
            cr_assert(strstr(c.err, "'somewhere' is not an address"), "case %zu: stderr: %s", i, c.err);
        }
        tc_child_free(&c);
    }
}

Test(client, help_goes_to_stdout)
{
    const char *cmds[] = {"status", "points", "materialize"};
    for (size_t i = 0; i < 3; i++) {
        tc_child_t c;
        int code = tc_run(&c, (const char *[]){cmds[i], "--help", NULL});
        cr_assert_eq(code, 0);
        cr_assert(strstr(c.out, "usage: tidemark ") && strstr(c.out, "--api ADDR"), "stdout: %s", c.out);
        cr_assert_str_eq(c.err, "");
        tc_child_free(&c);
    }
}
