/*
 * Routing, parameters, the token and request bodies, against a real server
 * driven by libcurl: what every handler can count on before it runs.
 */
#include <string.h>

#include "apit.h"

static apit_server_t T;

static void setup(void)
{
    apit_init(&T);
    apit_start(&T);
}

static void teardown(void)
{
    apit_stop(&T);
}

TestSuite(api_routing, .init = setup, .fini = teardown, .timeout = 60);

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_string(v), "no string %s", key);
    return json_string_value(v);
}

Test(api_routing, health_is_public_and_carries_the_appliance)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/v1/health", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_not_null(r.json, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"appliance\":\"" APIT_APPLIANCE "\",\"status\":\"ok\"}\n");
    cr_assert_str_eq(apit_header(r.headers, "Content-Type"), "application/json");
    apit_resp_free(&r);
}

Test(api_routing, params_are_decoded_and_query_split)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/v1/machines/web1/points/%402026-11-27T10%3A00%3A00Z?kind=app&since=a%20b+c&flag",
              APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "machine"), "web1");
    cr_assert_str_eq(jstr(r.json, "selector"), "@2026-11-27T10:00:00Z");
    json_t *q = json_object_get(r.json, "query");
    cr_assert_str_eq(jstr(q, "kind"), "app");
    cr_assert_str_eq(jstr(q, "since"), "a b c");
    cr_assert_str_eq(jstr(q, "flag"), "");
    cr_assert_eq(json_object_size(q), 3);
    apit_resp_free(&r);

    /* Both forms of @ and : are accepted. */
    apit_curl(&T, NULL, "GET", "/v1/machines/web1/points/@2026-11-27T10:00:00Z", APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "selector"), "@2026-11-27T10:00:00Z");
    apit_resp_free(&r);
}

Test(api_routing, unknown_paths_are_404)
{
    const char *paths[] = {"/", "/v1", "/v1/machines/web1/points", "/v1/machines/web1/points/latest/x",
                           "/v1/machines//points/latest", "/v1/health/", "/nothing?x=1"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        apit_resp_t r;
        apit_curl(&T, NULL, "GET", paths[i], APIT_TOKEN, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 404, "%s: %ld %s", paths[i], r.status, r.body);
        cr_assert_str_eq(apit_error_code(&r), "not-found");
        cr_assert(strstr(apit_error_message(&r), "no such path") != NULL, "%s", r.body);
        apit_resp_free(&r);
    }
}

Test(api_routing, other_methods_are_405_with_allow)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/points/latest", APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 405, "%s", r.body);
    cr_assert_str_eq(apit_error_code(&r), "method-not-allowed");
    cr_assert_str_eq(apit_header(r.headers, "Allow"), "GET, PUT, DELETE");
    apit_resp_free(&r);

    apit_curl(&T, NULL, "DELETE", "/v1/health", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 405, "%s", r.body);
    cr_assert_str_eq(apit_header(r.headers, "Allow"), "GET");
    apit_resp_free(&r);

    apit_curl(&T, NULL, "DELETE", "/v1/machines/web1/points/latest", APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "method"), "DELETE");
    apit_resp_free(&r);
}

Test(api_routing, token_is_required_and_checked)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/v1/machines/web1/points/latest", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 401, "%s", r.body);
    cr_assert_str_eq(apit_error_code(&r), "unauthorized");
    cr_assert_not_null(apit_header(r.headers, "WWW-Authenticate"));
    apit_resp_free(&r);

    const char *wrong[] = {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee",
                           "0123456789abcdef", APIT_TOKEN "0", ""};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        apit_curl(&T, NULL, "GET", "/v1/machines/web1/points/latest", wrong[i], NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 401, "token '%s': %s", wrong[i], r.body);
        cr_assert_str_eq(apit_error_code(&r), "unauthorized");
        apit_resp_free(&r);
    }

    apit_curl(&T, NULL, "GET", "/v1/machines/web1/points/latest", APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    apit_resp_free(&r);
}

Test(api_routing, json_body_reaches_the_handler)
{
    apit_resp_t r;
    const char *body = "{\"name\": \"before-upgrade\"}";
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, "application/json; charset=utf-8", body,
              strlen(body), &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(jstr(json_object_get(r.json, "got"), "name"), "before-upgrade");
    apit_resp_free(&r);

    /* No body at all: the handler sees none. */
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert(json_is_null(json_object_get(r.json, "got")), "%s", r.body);
    apit_resp_free(&r);
}

Test(api_routing, other_media_types_are_415)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, "text/plain", "{}", 2, &r);
    cr_assert_eq(r.status, 415, "%s", r.body);
    cr_assert_str_eq(apit_error_code(&r), "unsupported-media-type");
    apit_resp_free(&r);

    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, NULL, "{}", 2, &r);
    cr_assert_eq(r.status, 415, "%s", r.body);
    apit_resp_free(&r);
}

Test(api_routing, bad_json_is_400_naming_where)
{
    apit_resp_t r;
    const char *body = "{\n  \"name\": \"x\",\n  oops\n}";
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, "application/json", body, strlen(body), &r);
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_assert_str_eq(apit_error_code(&r), "bad-request");
    const char *msg = apit_error_message(&r);
    cr_assert(strstr(msg, "not valid JSON") != NULL && strstr(msg, "line 3") != NULL &&
                  strstr(msg, "column") != NULL,
              "%s", msg);
    apit_resp_free(&r);
}

Test(api_routing, bad_escapes_are_400)
{
    const char *paths[] = {"/v1/machines/web%zz/points/latest", "/v1/machines/web1/points/%4",
                           "/v1/machines/%00/points/latest", "/v1/health?x=%G1"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        apit_resp_t r;
        apit_curl(&T, NULL, "GET", paths[i], APIT_TOKEN, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 400, "%s: %s", paths[i], r.body);
        cr_assert_str_eq(apit_error_code(&r), "bad-request");
        apit_resp_free(&r);
    }
}

Test(api_routing, metrics_is_prometheus_text)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/metrics", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(apit_header(r.headers, "Content-Type"), TM_HTTP_PROMETHEUS_TEXT);
    cr_assert_str_eq(r.body, "# TYPE tidemark_up gauge\ntidemark_up 1\n");
    apit_resp_free(&r);
}

Test(api_routing, head_gets_headers_only)
{
    /* No HEAD route: 405, and no body bytes on the wire (the next
     * request on the connection would otherwise read them). */
    int fd = apit_connect(T.port);
    apit_send_str(fd, "HEAD /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    char head[1024];
    size_t n = 0;
    while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) {
        cr_assert(recv(fd, head + n, 1, 0) == 1);
        n++;
    }
    head[n] = '\0';
    cr_assert(strncmp(head, "HTTP/1.1 405 ", 13) == 0, "%s", head);
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(r.status, 200, "%s", r.head);
    apit_raw_free(&r);
    close(fd);
}
