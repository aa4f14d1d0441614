/*
 * App-consistent tags end to end: the real `tidemark serve` and a real
 * replay agent. A tag asked for through the API, and one the schedule
 * (`tags.every`) asks for on its own, each become an app point in the
 * machine's list.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/token.h"
#include "base/clock.h"
#include "tests/ingest/ita.h"

TestSuite(api_tags, .init = tc_setup, .fini = tc_teardown, .timeout = 120);

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0;
    *buf = realloc(*buf, old + size * n + 1);
    memcpy(*buf + old, p, size * n);
    (*buf)[old + size * n] = '\0';
    return size * n;
}

/* One request; returns the status, *body the answer (free it). */
static long http(unsigned port, const char *token, const char *method, const char *path, const char *json,
                 char **body)
{
    CURL *c = curl_easy_init();
    char url[256], auth[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (json)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    long status;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* Poll the app points until one whose tag starts with prefix appears. */
static bool wait_app_point(unsigned port, const char *token, const char *prefix, int seconds)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)seconds * 1000000000u;
    while (tm_mono_ns() < deadline) {
        char *body;
        long st = http(port, token, "GET", "/v1/machines/db1/points?kind=app", NULL, &body);
        bool found = false;
        if (st == 200) {
            json_t *j = json_loads(body, 0, NULL);
            json_t *pts = json_object_get(j, "points");
            for (size_t i = 0; i < json_array_size(pts); i++) {
                const char *tag = json_string_value(json_object_get(json_array_get(pts, i), "tag"));
                found |= tag && strncmp(tag, prefix, strlen(prefix)) == 0;
            }
            json_decref(j);
        }
        free(body);
        if (found)
            return true;
        usleep(100 * 1000); /* polling the API as an orchestrator does */
    }
    return false;
}

Test(api_tags, requested_and_scheduled_tags_become_app_points)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    uint8_t secret[32];
    ita_add_machine(data, "db1", secret);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", secret[i]);
    tc_write_file(tc_path("db1.secret"), hex);
    /* off by default, on for db1: the machine's own period is the one used */
    tc_write_file(tc_path("conf"), "tags.every = off\ntags.every.db1 = 10s\n");
    ita_server_t srv;
    ita_start(&srv, data, (const char *[]){"--config", tc_path("conf"), NULL});
    char token[TM_API_TOKEN_HEX + 1], err[256];
    cr_assert_eq(tm_api_token_read(data, token, err, sizeof err), 0, "%s", err);

    /* a replay agent writing for a while (its disks are empty: SYNCED at once) */
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%u", srv.port);
    tc_child_t agent;
    tc_spawn(&agent, NULL,
             (const char *[]){"agent", "replay", "--server", server, "--machine", "db1", "--secret-file",
                              tc_path("db1.secret"), "--workload",
                              "disks=1,size=16M,rate=1M,bs=4k:100,duration=30,seed=3", NULL});

    /* the schedule asks first: the machine has no app point yet */
    cr_assert(wait_app_point(srv.api_port, token, "auto-", 30), "no scheduled app point appeared");
    /* then one through the API */
    char *body;
    long st = http(srv.api_port, token, "POST", "/v1/machines/db1/tags", "{\"name\":\"before-upgrade\"}", &body);
    cr_assert_eq(st, 202, "%s", body);
    free(body);
    cr_assert(wait_app_point(srv.api_port, token, "before-upgrade", 30), "the requested app point never appeared");
    /* latest-app names it */
    st = http(srv.api_port, token, "GET", "/v1/machines/db1/points/latest-app", NULL, &body);
    cr_assert_eq(st, 200, "%s", body);
    cr_assert(strstr(body, "\"before-upgrade\""), "%s", body);
    free(body);

    kill(agent.pid, SIGTERM);
    tc_finish(&agent);
    tc_child_free(&agent);
    ita_stop(&srv);
    tc_child_free(&srv.c);
    curl_global_cleanup();
}
