/* HTTP server test helpers; the contracts are in apit.h. */
#include "apit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/mem.h"

/* ---- the toy routes (server thread) --------------------------------------------------- */

static void h_health(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    tm_http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_point(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    json_t *q = json_object();
    for (size_t i = 0; i < tm_http_query_count(req); i++) {
        const char *n, *v;
        tm_http_query_at(req, i, &n, &v);
        json_object_set_new(q, n, json_string(v));
    }
    tm_http_reply_json(req, 200,
                       json_pack("{s:s, s:s, s:o}", "machine", tm_http_param(req, "machine"), "selector",
                                 tm_http_param(req, "selector"), "query", q));
}

static void h_method(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    tm_http_reply_json(req, 200, json_pack("{s:s}", "method", tm_http_method(req)));
}

static void h_tags(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    json_t *body = tm_http_json(req);
    tm_http_reply_json(req, 202,
                       json_pack("{s:s, s:O}", "machine", tm_http_param(req, "machine"), "got",
                                 body ? body : json_null()));
}

static long query_long(const tm_http_req_t *req, const char *name)
{
    const char *v = tm_http_query(req, name);
    return v ? strtol(v, NULL, 10) : 0;
}

static void h_fast(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    tm_http_reply_json(req, 200, json_pack("{s:i}", "id", (json_int_t)query_long(req, "id")));
}

typedef struct slow {
    uv_timer_t timer;
    tm_http_req_t *req;
    apit_server_t *t;
} slow_t;

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *tm)
{
    slow_t *s = tm->data;
    s->t->slow_pending--;
    if (tm_http_client_gone(s->req))
        s->t->slow_gone++;
    tm_http_reply_json(s->req, 200, json_pack("{s:i}", "id", (json_int_t)query_long(s->req, "id")));
    tm->data = s;
    uv_close((uv_handle_t *)tm, slow_closed);
}

static void h_slow(tm_http_req_t *req, void *ctx)
{
    apit_server_t *t = ctx;
    slow_t *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->req = req;
    s->t = t;
    uv_timer_init(&t->loop, &s->timer);
    s->timer.data = s;
    t->slow_pending++;
    uv_timer_start(&s->timer, slow_fire, (uint64_t)query_long(req, "ms"), 0);
}

static void h_pending(tm_http_req_t *req, void *ctx)
{
    apit_server_t *t = ctx;
    tm_http_reply_json(req, 200, json_pack("{s:i}", "pending", (json_int_t)t->slow_pending));
}

static void h_metrics(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    static const char text[] = "# TYPE tidemark_up gauge\ntidemark_up 1\n";
    tm_http_reply_text(req, 200, TM_HTTP_PROMETHEUS_TEXT, text, sizeof text - 1);
}

#define PT "/v1/machines/{machine}/points/{selector}"
static tm_http_route_t apit__routes[] = {
    {"GET", "/v1/health", h_health, NULL, true},
    {"GET", PT, h_point, NULL, false},
    {"PUT", PT, h_method, NULL, false},
    {"DELETE", PT, h_method, NULL, false},
    {"POST", "/v1/machines/{machine}/tags", h_tags, NULL, false},
    {"GET", "/fast", h_fast, NULL, true},
    {"GET", "/slow", h_slow, NULL, true},
    {"GET", "/pending", h_pending, NULL, true},
    {"GET", "/metrics", h_metrics, NULL, true},
};

/* ---- the server thread ----------------------------------------------------------------- */

void apit_init(apit_server_t *t)
{
    memset(t, 0, sizeof *t);
    signal(SIGPIPE, SIG_IGN);
    /* the server's allocations, orphaned requests included, checked at the end */
    tmt_alloc_count();
    cr_assert_eq(uv_loop_init(&t->loop), 0);
    for (size_t i = 0; i < sizeof apit__routes / sizeof apit__routes[0]; i++)
        if (apit__routes[i].handler == h_slow || apit__routes[i].handler == h_pending)
            apit__routes[i].ctx = t;
    t->cfg.appliance = APIT_APPLIANCE;
    t->cfg.token = APIT_TOKEN;
    t->cfg.routes = apit__routes;
    t->cfg.nroutes = sizeof apit__routes / sizeof apit__routes[0];
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void apit__thread(void *arg)
{
    apit_server_t *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void apit__closed(void *arg)
{
    apit_server_t *t = arg;
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void apit__on_stop(uv_async_t *a)
{
    apit_server_t *t = a->data;
    tm_http_server_get_stats(t->srv, &t->stats);
    tm_http_server_close(t->srv, apit__closed, t);
    t->srv = NULL;
}

void apit_start(apit_server_t *t)
{
    int rc = tm_http_server_new(&t->loop, &t->cfg, &t->srv);
    cr_assert_eq(rc, 0, "tm_http_server_new: %s", tmt_errname(rc));
    rc = tm_http_server_listen(t->srv, "127.0.0.1:0");
    cr_assert_eq(rc, 0, "tm_http_server_listen: %s", tmt_errname(rc));
    t->port = tm_http_server_port(t->srv);
    cr_assert_gt(t->port, 0);
    cr_assert_eq(uv_async_init(&t->loop, &t->stop, apit__on_stop), 0);
    t->stop.data = t;
    /* From here on only the thread touches the loop. */
    cr_assert_eq(uv_thread_create(&t->thread, apit__thread, t), 0);
    t->running = true;
}

void apit_stop(apit_server_t *t)
{
    if (t->stopped)
        return;
    t->stopped = true;
    if (t->running) {
        cr_assert_eq(uv_async_send(&t->stop), 0);
        cr_assert_eq(uv_thread_join(&t->thread), 0);
        t->running = false;
    }
    int rc = uv_loop_close(&t->loop);
    cr_assert_eq(rc, 0, "uv_loop_close: %s (a handle or request was left open)", uv_strerror(rc));
    long live = tmt_alloc_live();
    cr_assert_eq(live, 0, "%ld allocations of the server were not freed", live);
    cr_assert_eq(t->slow_pending, 0);
    curl_global_cleanup();
}

void apit_wait_pending(const apit_server_t *t, unsigned n)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)APIT_IO_TIMEOUT_S * 1000000000u;
    for (;;) {
        apit_resp_t r;
        apit_curl(t, NULL, "GET", "/pending", NULL, NULL, NULL, 0, &r);
        json_int_t got = json_integer_value(json_object_get(r.json, "pending"));
        apit_resp_free(&r);
        if (got == (json_int_t)n)
            return;
        cr_assert_lt(tm_mono_ns(), deadline, "%u /slow requests never reached their handler (%lld did)", n,
                     (long long)got);
    }
}

/* ---- libcurl --------------------------------------------------------------------------- */

typedef struct sink {
    char *buf;
    size_t cap, len;
} sink_t;

static size_t sink_write(char *p, size_t size, size_t n, void *arg)
{
    sink_t *s = arg;
    size_t len = size * n;
    size_t take = len < s->cap - 1 - s->len ? len : s->cap - 1 - s->len;
    memcpy(s->buf + s->len, p, take);
    s->len += take;
    s->buf[s->len] = '\0';
    return len;
}

void apit_curl(const apit_server_t *t, void *h, const char *method, const char *path, const char *token,
               const char *ctype, const void *body, size_t len, apit_resp_t *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = h ? h : curl_easy_init();
    cr_assert_not_null(c);
    char url[4096], auth[256], ct[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", t->port, path);
    struct curl_slist *hdrs = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, ct);
    } else if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type:"); /* curl's default form type removed */
    }
    sink_t sb = {out->body, sizeof out->body, 0}, sh = {out->headers, sizeof out->headers, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sh);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)APIT_IO_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "curl %s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &out->connects);
    out->body_len = sb.len;
    out->json = json_loadb(out->body, out->body_len, 0, NULL);
    curl_slist_free_all(hdrs);
    /* The handle keeps pointers to this call's header list and sinks. */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (!h)
        curl_easy_cleanup(c);
}

void apit_resp_free(apit_resp_t *r)
{
    json_decref(r->json);
    r->json = NULL;
}

static const char *error_field(json_t *j, const char *body, const char *field)
{
    cr_assert_not_null(j, "not a JSON body: %s", body);
    json_t *app = json_object_get(j, "appliance");
    cr_assert(json_is_string(app) && strcmp(json_string_value(app), APIT_APPLIANCE) == 0, "no appliance: %s", body);
    json_t *err = json_object_get(j, "error");
    cr_assert(json_is_object(err) && json_object_size(err) == 2, "no error object: %s", body);
    cr_assert_eq(json_object_size(j), 2, "extra members: %s", body);
    json_t *v = json_object_get(err, field);
    cr_assert(json_is_string(v), "no error.%s: %s", field, body);
    return json_string_value(v);
}

const char *apit_error_code(const apit_resp_t *r)
{
    return error_field(r->json, r->body, "code");
}

const char *apit_error_message(const apit_resp_t *r)
{
    return error_field(r->json, r->body, "message");
}

const char *apit_header(const char *headers, const char *name)
{
    static char value[1024];
    size_t nl = strlen(name);
    for (const char *line = headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - line);
            if (vl >= sizeof value)
                vl = sizeof value - 1;
            memcpy(value, v, vl);
            value[vl] = '\0';
            return value;
        }
        line = eol ? eol + 2 : NULL;
    }
    return NULL;
}

/* ---- raw client ---------------------------------------------------------------------------- */

int apit_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = APIT_IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

bool apit_try_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        b += k;
        n -= (size_t)k;
    }
    return true;
}

void apit_send(int fd, const void *p, size_t n)
{
    cr_assert(apit_try_send(fd, p, n), "send: %s", strerror(errno));
}

void apit_send_str(int fd, const char *s)
{
    apit_send(fd, s, strlen(s));
}

/* One byte; false on EOF or reset. */
static bool recv1(int fd, char *ch)
{
    for (;;) {
        ssize_t k = recv(fd, ch, 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            cr_assert_fail("no answer from the server within %d s", APIT_IO_TIMEOUT_S);
        return k == 1;
    }
}

bool apit_read_response(int fd, apit_raw_t *r)
{
    memset(r, 0, sizeof *r);
    size_t n = 0;
    char ch;
    /* The head, byte by byte up to the blank line: slow, and simple. */
    while (n < 4 || memcmp(r->head + n - 4, "\r\n\r\n", 4) != 0) {
        if (!recv1(fd, &ch)) {
            cr_assert_eq(n, 0, "EOF inside a response head: %.*s", (int)n, r->head);
            return false;
        }
        cr_assert_lt(n, sizeof r->head - 1);
        r->head[n++] = ch;
    }
    r->head[n] = '\0';
    cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1, "not a status line: %s", r->head);
    const char *cl = apit_header(strstr(r->head, "\r\n") + 2, "Content-Length");
    cr_assert_not_null(cl, "no Content-Length: %s", r->head);
    size_t len = strtoul(cl, NULL, 10);
    cr_assert_lt(len, sizeof r->body);
    for (size_t i = 0; i < len; i++)
        cr_assert(recv1(fd, &r->body[i]), "EOF inside a response body");
    r->body_len = len;
    r->json = json_loadb(r->body, len, 0, NULL);
    return true;
}

void apit_raw_free(apit_raw_t *r)
{
    json_decref(r->json);
    r->json = NULL;
}

bool apit_at_eof(int fd)
{
    char ch;
    return !recv1(fd, &ch);
}

void apit_close_reset(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}
