/* Helpers of the consistency tests (ct.h). */
#include "tests/consistency/ct.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char ct_api[64], ct_agents[64], ct_nbd[64];
static char ct_token[128];

static size_t sink(char *p, size_t sz, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0;
    char *g = realloc(*buf, old + sz * n + 1);
    cr_assert_not_null(g);
    memcpy(g + old, p, sz * n);
    g[old + sz * n] = '\0';
    *buf = g;
    return sz * n;
}

long ct_http(const char *path, const char *body, json_t **out)
{
    return ct_request(body ? "POST" : "GET", path, body, out);
}

/* One request: the status, the body in *buf (free it; never NULL). */
static long ct__fetch(const char *method, const char *path, const char *body, char **buf)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    char url[256], auth[200];
    snprintf(url, sizeof url, "http://%s%s", ct_api, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", ct_token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    *buf = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK, "%s %s", method, path);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (!*buf)
        *buf = strdup("");
    return status;
}

long ct_request(const char *method, const char *path, const char *body, json_t **out)
{
    char *buf;
    long status = ct__fetch(method, path, body, &buf);
    *out = json_loads(buf, 0, NULL);
    cr_assert_not_null(*out, "%s: not JSON: %s", path, buf);
    free(buf);
    return status;
}

char *ct_get_text(const char *path)
{
    char *buf;
    long status = ct__fetch("GET", path, NULL, &buf);
    cr_assert_eq(status, 200, "%s: %ld %s", path, status, buf);
    return buf;
}

json_t *ct_get_ok(const char *path)
{
    json_t *j;
    long st = ct_http(path, NULL, &j);
    cr_assert_eq(st, 200, "%s: %ld %s", path, st, json_dumps(j, 0));
    return j;
}

static void ct__addr(const at_child_t *c, const char *prefix, char *out, size_t len)
{
    const char *p = strstr(c->out, prefix);
    cr_assert_not_null(p, "no '%s' in:\n%s", prefix, c->out);
    p += strlen(prefix);
    snprintf(out, len, "%.*s", (int)strcspn(p, " \n"), p);
}

void ct_serve_spawn(at_child_t *srv, const char *data, const char *conf)
{
    at_spawn(srv, (const char *[]){"serve", "--data", data, "--config", conf, "--agents", "127.0.0.1:0", "--api",
                                   "127.0.0.1:0", "--nbd", "127.0.0.1:0", NULL});
}

void ct_serve(at_child_t *srv, const char *data, const char *conf)
{
    ct_serve_spawn(srv, data, conf);
    cr_assert(at_wait(srv, false, "serving", 30000), "%s\n%s", srv->out, srv->err);
    ct__addr(srv, "agents on ", ct_agents, sizeof ct_agents);
    ct__addr(srv, "api on ", ct_api, sizeof ct_api);
    ct__addr(srv, "nbd on ", ct_nbd, sizeof ct_nbd);
    char tokpath[512];
    snprintf(tokpath, sizeof tokpath, "%s/api.token", data);
    FILE *tf = fopen(tokpath, "r");
    cr_assert(tf && fgets(ct_token, sizeof ct_token, tf));
    fclose(tf);
    ct_token[strcspn(ct_token, "\n")] = '\0';
}
