/*
 * Connections: keep-alive, pipelining with handlers that reply late (in
 * request order all the same), Connection: close, HTTP/1.0, clients that
 * go away before their reply, and closing the server with replies pending.
 */
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

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

TestSuite(api_conn, .init = setup, .fini = teardown, .timeout = 60);

static json_int_t id_of(json_t *j)
{
    json_t *v = json_object_get(j, "id");
    cr_assert(json_is_integer(v));
    return json_integer_value(v);
}

Test(api_conn, keep_alive_reuses_one_connection)
{
    CURL *h = curl_easy_init();
    for (int i = 0; i < 5; i++) {
        apit_resp_t r;
        char path[64];
        snprintf(path, sizeof path, "/fast?id=%d", i);
        apit_curl(&T, h, "GET", path, NULL, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 200, "%s", r.body);
        cr_assert_eq(id_of(r.json), i);
        cr_assert_eq(r.connects, i == 0 ? 1 : 0, "request %d made a new connection", i);
        apit_resp_free(&r);
    }
    curl_easy_cleanup(h);
}

Test(api_conn, pipelined_responses_come_in_request_order)
{
    int fd = apit_connect(T.port);
    /* The first is the slowest; the third is slow too, the rest immediate. */
    apit_send_str(fd, "GET /slow?id=1&ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /fast?id=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /slow?id=3&ms=100 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /fast?id=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 1; i <= 5; i++) {
        apit_raw_t r;
        cr_assert(apit_read_response(fd, &r), "response %d missing", i);
        if (i == 4) {
            cr_assert_eq(r.status, 404, "%s", r.body);
        } else {
            cr_assert_eq(r.status, 200, "%s", r.body);
            cr_assert_eq(id_of(r.json), i, "response %d: %s", i, r.body);
        }
        apit_raw_free(&r);
    }
    /* Still open for more. */
    apit_send_str(fd, "GET /fast?id=6 HTTP/1.1\r\nHost: x\r\n\r\n");
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(id_of(r.json), 6);
    apit_raw_free(&r);
    close(fd);
}

Test(api_conn, many_pipelined_requests_in_one_send)
{
    /* More than TM_HTTP_MAX_PIPELINE: the server stops parsing, waits for
     * replies, and resumes. */
    enum { N = 3 * TM_HTTP_MAX_PIPELINE + 1 };
    static char buf[N * 64];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "GET /slow?id=%d&ms=%d HTTP/1.1\r\n\r\n", i,
                                i % 3 == 0 ? 20 : 0);
    int fd = apit_connect(T.port);
    apit_send(fd, buf, len);
    for (int i = 0; i < N; i++) {
        apit_raw_t r;
        cr_assert(apit_read_response(fd, &r), "response %d missing", i);
        cr_assert_eq(id_of(r.json), i);
        apit_raw_free(&r);
    }
    close(fd);
}

Test(api_conn, connection_close_is_honoured)
{
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /fast?id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      "GET /fast?id=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(id_of(r.json), 1);
    cr_assert(strstr(r.head, "Connection: close\r\n") != NULL, "%s", r.head);
    apit_raw_free(&r);
    /* The request after it is never answered. */
    cr_assert(apit_at_eof(fd));
    close(fd);
}

Test(api_conn, http_1_0)
{
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /fast?id=1 HTTP/1.0\r\n\r\n");
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(id_of(r.json), 1);
    cr_assert(strstr(r.head, "Connection: close\r\n") != NULL, "%s", r.head);
    apit_raw_free(&r);
    cr_assert(apit_at_eof(fd));
    close(fd);

    /* HTTP/1.0 with keep-alive asked for stays open. */
    fd = apit_connect(T.port);
    for (int i = 0; i < 3; i++) {
        apit_send_str(fd, "GET /fast?id=7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        cr_assert(apit_read_response(fd, &r));
        cr_assert_eq(id_of(r.json), 7);
        cr_assert(strstr(r.head, "Connection: keep-alive\r\n") != NULL, "%s", r.head);
        apit_raw_free(&r);
    }
    close(fd);
}

Test(api_conn, half_closed_client_still_gets_its_answers)
{
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /slow?id=1&ms=100 HTTP/1.1\r\n\r\nGET /fast?id=2 HTTP/1.1\r\n\r\n");
    shutdown(fd, SHUT_WR);
    apit_raw_t r;
    for (int i = 1; i <= 2; i++) {
        cr_assert(apit_read_response(fd, &r));
        cr_assert_eq(id_of(r.json), i);
        apit_raw_free(&r);
    }
    cr_assert(apit_at_eof(fd));
    close(fd);
}

Test(api_conn, client_gone_before_an_async_reply)
{
    /* Requests with handlers, a response queued behind them, a request
     * half received, then a reset: every reply is dropped, nothing leaks
     * (apit_stop counts the allocations). */
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /slow?id=1&ms=1000 HTTP/1.1\r\n\r\n"
                      "GET /fast?id=2 HTTP/1.1\r\n\r\n"
                      "GET /slow?id=3&ms=1200 HTTP/1.1\r\n\r\n"
                      "GET /v1/health HTTP/1.1\r\nContent-Le");
    apit_wait_pending(&T, 2);
    apit_close_reset(fd);
    /* The server carries on meanwhile. */
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/fast?id=9", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    apit_resp_free(&r);
    apit_wait_pending(&T, 0);
    apit_stop(&T);
    cr_assert_eq(T.slow_gone, 2, "replies to a gone client: %u", T.slow_gone);
}

Test(api_conn, close_with_replies_pending)
{
    /* The server closes while handlers hold requests: it waits for their
     * replies, drops them and frees everything. */
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /slow?id=1&ms=1000 HTTP/1.1\r\n\r\nGET /slow?id=2&ms=1100 HTTP/1.1\r\n\r\n");
    apit_wait_pending(&T, 2);
    apit_stop(&T);
    cr_assert(apit_at_eof(fd), "a response came after the server closed");
    close(fd);
    cr_assert_eq(T.slow_gone, 2);
}
