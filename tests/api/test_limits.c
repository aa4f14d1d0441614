/*
 * Limits and bad input: oversize bodies (by Content-Length and chunked),
 * oversize heads, malformed requests, too many connections, slow clients.
 * After each, the server still serves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "apit.h"
#include "base/clock.h"

static apit_server_t T;

static void setup(void)
{
    apit_init(&T);
    tmt_log_capture();
}

static void teardown(void)
{
    apit_stop(&T);
}

TestSuite(api_limits, .init = setup, .fini = teardown, .timeout = 90);

static void assert_serving(void)
{
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/v1/health", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "the server stopped serving: %ld %s", r.status, r.body);
    apit_resp_free(&r);
}

static void assert_error(const apit_raw_t *r, int status, const char *code)
{
    cr_assert_eq(r->status, status, "%s%s", r->head, r->body);
    cr_assert_not_null(r->json, "%s", r->body);
    json_t *err = json_object_get(r->json, "error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), code, "%s", r->body);
    cr_assert_str_eq(json_string_value(json_object_get(r->json, "appliance")), APIT_APPLIANCE);
}

Test(api_limits, body_over_1mib_by_content_length_is_413)
{
    apit_start(&T);
    /* Refused from the header alone: nothing of the body is sent. */
    int fd = apit_connect(T.port);
    apit_send_str(fd, "POST /v1/machines/web1/tags HTTP/1.1\r\nAuthorization: Bearer " APIT_TOKEN "\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n");
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    assert_error(&r, 413, "too-large");
    cr_assert(strstr(r.head, "Connection: close\r\n") != NULL, "%s", r.head);
    apit_raw_free(&r);
    cr_assert(apit_at_eof(fd));
    close(fd);

    /* curl sending the whole body gets the answer too. */
    size_t len = (2u << 20);
    char *body = malloc(len);
    memset(body, ' ', len);
    apit_resp_t cr;
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, "application/json", body, len, &cr);
    cr_assert_eq(cr.status, 413, "%s", cr.body);
    apit_resp_free(&cr);

    /* Exactly 1 MiB is fine. */
    memset(body, ' ', TM_HTTP_MAX_BODY);
    body[0] = '{';
    body[TM_HTTP_MAX_BODY - 1] = '}';
    apit_curl(&T, NULL, "POST", "/v1/machines/web1/tags", APIT_TOKEN, "application/json", body, TM_HTTP_MAX_BODY,
              &cr);
    cr_assert_eq(cr.status, 202, "%s", cr.body);
    apit_resp_free(&cr);
    free(body);
    assert_serving();
}

Test(api_limits, chunked_body_over_1mib_is_413)
{
    apit_start(&T);
    int fd = apit_connect(T.port);
    apit_send_str(fd, "POST /v1/machines/web1/tags HTTP/1.1\r\nAuthorization: Bearer " APIT_TOKEN "\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    /* 64 KiB chunks until the server answers (it reads 1 MiB, then stops). */
    static char chunk[10 + (64u << 10) + 2];
    int n = snprintf(chunk, sizeof chunk, "%x\r\n", 64u << 10);
    memset(chunk + n, ' ', 64u << 10);
    memcpy(chunk + n + (64u << 10), "\r\n", 2);
    size_t clen = (size_t)n + (64u << 10) + 2;
    for (int i = 0; i < 32; i++)
        if (!apit_try_send(fd, chunk, clen))
            break; /* the server answered and stopped reading: fine */
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    assert_error(&r, 413, "too-large");
    apit_raw_free(&r);
    close(fd);

    /* A small chunked body is fine, trailers too (they are dropped). */
    fd = apit_connect(T.port);
    apit_send_str(fd, "POST /v1/machines/web1/tags HTTP/1.1\r\nAuthorization: Bearer " APIT_TOKEN "\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nX-Trailer: dropped\r\n\r\n");
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(r.status, 202, "%s", r.body);
    apit_raw_free(&r);
    close(fd);
    assert_serving();
}

static void send_head_of(int fd, size_t total)
{
    /* A request line and headers of exactly total bytes. */
    static char buf[64u << 10];
    const char *start = "GET /v1/health HTTP/1.1\r\n";
    size_t len = strlen(start);
    memcpy(buf, start, len);
    while (total - len > 2) {
        size_t room = total - len - 2;
        size_t line = room > 4000 ? 4000 : room;
        if (line < 5) {
            /* Too short for a header line: lengthen the previous one. */
            memmove(buf + len - 2 + line, buf + len - 2, 2);
            memset(buf + len - 2, 'x', line);
            len += line;
            break;
        }
        memcpy(buf + len, "X: ", 3);
        memset(buf + len + 3, 'y', line - 5);
        memcpy(buf + len + line - 2, "\r\n", 2);
        len += line;
    }
    memcpy(buf + len, "\r\n", 2);
    len += 2;
    cr_assert_eq(len, total);
    apit_send(fd, buf, len);
}

Test(api_limits, head_over_16kib_is_431)
{
    apit_start(&T);
    int fd = apit_connect(T.port);
    send_head_of(fd, TM_HTTP_MAX_HEADER_BYTES);
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(r.status, 200, "a head of exactly the limit: %s", r.body);
    apit_raw_free(&r);
    send_head_of(fd, TM_HTTP_MAX_HEADER_BYTES + 1);
    cr_assert(apit_read_response(fd, &r));
    assert_error(&r, 431, "headers-too-large");
    apit_raw_free(&r);
    cr_assert(apit_at_eof(fd));
    close(fd);

    /* A head that never ends. */
    fd = apit_connect(T.port);
    apit_send_str(fd, "GET /v1/health HTTP/1.1\r\n");
    static char junk[40u << 10];
    memset(junk, 'a', sizeof junk);
    memcpy(junk, "X-Long: ", 8);
    apit_try_send(fd, junk, sizeof junk);
    cr_assert(apit_read_response(fd, &r));
    assert_error(&r, 431, "headers-too-large");
    apit_raw_free(&r);
    close(fd);
    assert_serving();
}

Test(api_limits, malformed_request_is_400_and_others_are_served)
{
    apit_start(&T);
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /v1/health HTTP/9.9\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /v1/machines/web1/tags HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = apit_connect(T.port);
        apit_send_str(fd, bad[i]);
        apit_raw_t r;
        cr_assert(apit_read_response(fd, &r), "no answer to bad input %zu", i);
        assert_error(&r, 400, "bad-request");
        cr_assert(strstr(r.head, "Connection: close\r\n") != NULL, "%s", r.head);
        apit_raw_free(&r);
        cr_assert(apit_at_eof(fd), "input %zu: the connection stayed open", i);
        close(fd);
        assert_serving();
    }
    /* A good request before the bad one on the same connection is answered first. */
    int fd = apit_connect(T.port);
    apit_send_str(fd, "GET /fast?id=1 HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
    apit_raw_t r;
    cr_assert(apit_read_response(fd, &r));
    cr_assert_eq(r.status, 200);
    apit_raw_free(&r);
    cr_assert(apit_read_response(fd, &r));
    assert_error(&r, 400, "bad-request");
    apit_raw_free(&r);
    close(fd);
    cr_assert(tmt_log_count_prefix("api: 127.0.0.1:") >= 7, "log:\n%s", tmt_log_text());
}

Test(api_limits, connections_over_the_limit_are_closed)
{
    apit_start(&T);
    /* Every connection answers once: the server has accepted it. */
    enum { N = TM_HTTP_MAX_CONNS };
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = apit_connect(T.port);
        apit_send_str(fds[i], "GET /fast?id=1 HTTP/1.1\r\n\r\n");
        apit_raw_t r;
        cr_assert(apit_read_response(fds[i], &r), "connection %d was refused", i);
        apit_raw_free(&r);
    }
    int over = apit_connect(T.port);
    apit_try_send(over, "GET /fast?id=2 HTTP/1.1\r\n\r\n", 27);
    cr_assert(apit_at_eof(over), "connection %d was served", N + 1);
    close(over);

    /* One closes: a new one is served (once the server saw the close). */
    close(fds[0]);
    uint64_t deadline = tm_mono_ns() + 10ull * 1000000000u;
    for (;;) {
        int fd = apit_connect(T.port);
        apit_try_send(fd, "GET /fast?id=3 HTTP/1.1\r\n\r\n", 27);
        apit_raw_t r;
        bool served = apit_read_response(fd, &r);
        close(fd);
        if (served) {
            cr_assert_eq(r.status, 200);
            apit_raw_free(&r);
            break;
        }
        cr_assert_lt(tm_mono_ns(), deadline, "no connection is served after one closed");
    }
    for (int i = 1; i < N; i++)
        close(fds[i]);
    apit_stop(&T);
    cr_assert_geq(T.stats.conns_refused, 1);
    cr_assert(tmt_log_count_prefix("api: 127.0.0.1:") >= 1, "%s", tmt_log_text());
}

Test(api_limits, slow_clients_time_out)
{
    T.cfg.request_timeout_ms = 300;
    apit_start(&T);
    uint64_t t0 = tm_mono_ns();
    int slow = apit_connect(T.port);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    cr_assert_eq(getsockname(slow, (struct sockaddr *)&a, &alen), 0);
    int slow_port = ntohs(a.sin_port);
    apit_send_str(slow, "GET /v1/health HTTP/1.1\r\nHost: x\r\n");
    int idle = apit_connect(T.port);
    cr_assert(apit_at_eof(slow));
    cr_assert(apit_at_eof(idle));
    uint64_t ms = (tm_mono_ns() - t0) / 1000000u;
    cr_assert(ms >= 250 && ms < 10000, "closed after %llu ms", (unsigned long long)ms);
    close(slow);
    close(idle);

    /* A handler working longer than the timeout is not cut off. */
    apit_resp_t r;
    apit_curl(&T, NULL, "GET", "/slow?id=1&ms=600", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    apit_resp_free(&r);
    apit_stop(&T);
    tmt_assert_log(TM_LOG_WARN, "api: 127.0.0.1:%d: no complete request within 300 ms; closing the connection",
                   slow_port);
}
