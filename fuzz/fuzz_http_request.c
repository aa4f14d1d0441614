/*
 * Fuzz target: the API's HTTP server (api/) over one socket-less connection
 * (tm_http_mem_*): parsing with http-parser, the head and body limits,
 * path and query decoding, routing, the token check, JSON bodies, replies
 * from handlers now or later, response order and the connection's end;
 * the same code a TCP client reaches.
 *
 * Input: one config byte, then the client's bytes.
 *
 *   u8 config  bits 0-3: feed the bytes in pieces of 2^(n-1) bytes (0: all
 *              at once); bit 4: the client resets the connection before the
 *              last replies (they are dropped); bit 5: handlers that hold
 *              their request are replied to newest first; bit 6: no EOF
 *              from the client at the end
 *
 * Routes (the token is FUZZ_HTTP_TOKEN, which the seeds carry):
 *   GET  /v1/health                               public, replied at once
 *   GET  /v1/machines/{machine}/points/{selector}  token, params and query echoed at once
 *   POST /v1/machines/{machine}/tags               token, held, body echoed later
 *   GET  /a/{x}                                    public, held, a 404 error later
 *   PUT  /a/{x}                                    public, text at once
 *
 * Checked besides "no crash, no read outside a buffer": every allocation
 * of the server is freed once the connection and its requests are done;
 * the output is a well-formed stream of HTTP responses (parsed back with
 * http-parser) whose JSON bodies parse and name the appliance; after the
 * client's EOF and every reply, the server has ended the connection.
 */
#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "base/log.h"
#include "base/mem.h"
#include "fuzz/fuzz_params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Also written into the seeds by gen_corpus.c. */
#define FUZZ_HTTP_TOKEN "f00df00df00df00df00df00df00df00df00df00df00df00df00df00df00df00d"
#define FUZZ_HTTP_APPLIANCE "0123456789abcdef"
#define FUZZ_HTTP_RESET 0x10u
#define FUZZ_HTTP_REVERSE 0x20u
#define FUZZ_HTTP_NO_EOF 0x40u

/* ---- allocation count ------------------------------------------------------ */

static long live;

static void *count_malloc(size_t n)
{
    void *p = malloc(n);
    live += p != NULL;
    return p;
}

static void *count_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    live += q != NULL && p == NULL;
    return q;
}

static void count_free(void *p)
{
    live -= p != NULL;
    free(p);
}

static const tm_allocator_t counting = {count_malloc, count_realloc, count_free};

/* ---- handlers ---------------------------------------------------------------- */

#define MAX_HELD 64
static tm_http_req_t *held[MAX_HELD];
static unsigned nheld;

static void hold(tm_http_req_t *req)
{
    FUZZ_ASSERT(nheld < MAX_HELD);
    held[nheld++] = req;
}

static void h_health(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    tm_http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_point(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    const char *m = tm_http_param(req, "machine"), *s = tm_http_param(req, "selector");
    FUZZ_ASSERT(m != NULL && s != NULL && m[0] != '\0' && s[0] != '\0');
    FUZZ_ASSERT(tm_http_param(req, "nothing") == NULL);
    json_t *q = json_array();
    for (size_t i = 0; i < tm_http_query_count(req); i++) {
        const char *n, *v;
        tm_http_query_at(req, i, &n, &v);
        FUZZ_ASSERT(n != NULL && v != NULL);
        json_array_append_new(q, json_stringn_nocheck(v, strlen(v)));
    }
    (void)tm_http_header(req, "Host");
    /* NULL when a param is not UTF-8: the server answers 500 for it. */
    json_t *body = json_pack("{s:s, s:s, s:O}", "machine", m, "selector", s, "query", q);
    json_decref(q);
    tm_http_reply_json(req, 200, body);
}

static void h_hold(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    hold(req);
}

static void h_put(tm_http_req_t *req, void *ctx)
{
    (void)ctx;
    size_t len;
    const uint8_t *b = tm_http_body(req, &len);
    FUZZ_ASSERT((b == NULL) == (len == 0));
    FUZZ_ASSERT(len == 0 || tm_http_json(req) != NULL);
    tm_http_add_header(req, "X-Len", "1");
    tm_http_reply_text(req, 200, "text/plain", "ok\n", 3);
}

/* A held request's late reply: by route. */
static void reply_held(tm_http_req_t *req)
{
    if (strcmp(tm_http_method(req), "POST") == 0) {
        json_t *j = tm_http_json(req);
        tm_http_reply_json(req, 202, json_pack("{s:O?}", "got", j));
    } else {
        tm_http_reply_error(req, 404, "not-found", "no '%s' here", tm_http_param(req, "x"));
    }
}

static void reply_all(bool reverse)
{
    /* Replying may dispatch more (parsing resumes): take the list first. */
    while (nheld > 0) {
        tm_http_req_t *batch[MAX_HELD];
        unsigned n = nheld;
        memcpy(batch, held, n * sizeof batch[0]);
        nheld = 0;
        for (unsigned i = 0; i < n; i++)
            reply_held(batch[reverse ? n - 1 - i : i]);
    }
}

static const tm_http_route_t routes[] = {
    {"GET", "/v1/health", h_health, NULL, true},
    {"GET", "/v1/machines/{machine}/points/{selector}", h_point, NULL, false},
    {"POST", "/v1/machines/{machine}/tags", h_hold, NULL, false},
    {"GET", "/a/{x}", h_hold, NULL, true},
    {"PUT", "/a/{x}", h_put, NULL, true},
};

/* ---- the output, parsed back ------------------------------------------------------ */

typedef struct out_check {
    bool json;        /* this response's Content-Type is application/json */
    bool ctype_field; /* the last header field was Content-Type */
    char *body;
    size_t body_len;
    unsigned responses;
} out_check_t;

static int oc_field(http_parser *p, const char *at, size_t len)
{
    out_check_t *oc = p->data;
    oc->ctype_field = len == 12 && strncmp(at, "Content-Type", 12) == 0;
    return 0;
}

static int oc_value(http_parser *p, const char *at, size_t len)
{
    out_check_t *oc = p->data;
    if (oc->ctype_field)
        oc->json = len == 16 && strncmp(at, "application/json", 16) == 0;
    return 0;
}

static int oc_body(http_parser *p, const char *at, size_t len)
{
    out_check_t *oc = p->data;
    char *b = realloc(oc->body, oc->body_len + len);
    FUZZ_ASSERT(b != NULL);
    memcpy(b + oc->body_len, at, len);
    oc->body = b;
    oc->body_len += len;
    return 0;
}

static int oc_done(http_parser *p)
{
    out_check_t *oc = p->data;
    FUZZ_ASSERT(p->status_code >= 100 && p->status_code <= 599);
    if (p->status_code >= 200) {
        oc->responses++;
        FUZZ_ASSERT(oc->json || p->status_code == 200);
    }
    if (oc->json) {
        json_error_t err;
        json_t *j = json_loadb(oc->body, oc->body_len, 0, &err);
        FUZZ_ASSERT(j != NULL);
        FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "appliance")), FUZZ_HTTP_APPLIANCE) == 0);
        if (p->status_code >= 400) {
            json_t *e = json_object_get(j, "error");
            FUZZ_ASSERT(json_is_string(json_object_get(e, "code")) && json_is_string(json_object_get(e, "message")));
        }
        json_decref(j);
    }
    free(oc->body);
    oc->body = NULL;
    oc->body_len = 0;
    oc->json = false;
    return 0;
}

static void check_output(const uint8_t *out, size_t len)
{
    static const http_parser_settings s = {
        .on_header_field = oc_field, .on_header_value = oc_value, .on_body = oc_body, .on_message_complete = oc_done};
    out_check_t oc = {0};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &oc;
    size_t n = http_parser_execute(&p, &s, (const char *)out, len);
    FUZZ_ASSERT(HTTP_PARSER_ERRNO(&p) == HPE_OK && n == len);
    free(oc.body);
}

/* ---- the run ------------------------------------------------------------------------ */

static tm_http_server_t *server(void)
{
    static uv_loop_t loop;
    static tm_http_server_t *srv;
    if (srv == NULL) {
        tm_log_set_level(TM_LOG_ERROR + 1); /* every bad request logs a line */
        tm_set_allocator(&counting);
        FUZZ_ASSERT(uv_loop_init(&loop) == 0);
        tm_http_config_t cfg = {.appliance = FUZZ_HTTP_APPLIANCE,
                                .token = FUZZ_HTTP_TOKEN,
                                .routes = routes,
                                .nroutes = sizeof routes / sizeof routes[0]};
        FUZZ_ASSERT(tm_http_server_new(&loop, &cfg, &srv) == 0);
    }
    return srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    tm_http_server_t *srv = server();
    unsigned cfg = data[0];
    unsigned bits = cfg & 15u;
    size_t piece = bits == 0 ? SIZE_MAX : (size_t)1 << (bits - 1);
    bool reverse = (cfg & FUZZ_HTTP_REVERSE) != 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    long before = live;
    tm_http_mem_t *m;
    FUZZ_ASSERT(tm_http_mem_open(srv, &m) == 0);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;
        size_t took = tm_http_mem_feed(m, in + off, n);
        FUZZ_ASSERT(took <= n);
        off += took;
        if (took == 0 && nheld == 0)
            FUZZ_ASSERT(!"the connection takes no input and waits for nothing");
        if (!(cfg & FUZZ_HTTP_RESET) || off < len)
            reply_all(reverse);
    }
    bool eof = !(cfg & FUZZ_HTTP_NO_EOF) && !(cfg & FUZZ_HTTP_RESET);
    if (eof) {
        tm_http_mem_eof(m);
        reply_all(reverse);
        FUZZ_ASSERT(tm_http_mem_closed(m));
    }
    size_t olen;
    const uint8_t *out = tm_http_mem_output(m, &olen);
    /* A HEAD response has no body after its Content-Length: the parser
     * reading it back cannot know which ones were. */
    if (memmem(in, len, "HEAD", 4) == NULL)
        check_output(out, olen);
    tm_http_mem_free(m);
    reply_all(reverse); /* dropped: the client is gone */
    FUZZ_ASSERT(live == before);
    return 0;
}
