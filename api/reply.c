/*
 * Responses: the status line and headers, a JSON body with "appliance" set,
 * docs/api.md's error object, or text; one buffer per response, handed to
 * the connection, which writes responses in request order.
 */
#include "api/http_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

/* What goes out when not even the response buffer can be had. */
static const char oom_response[] = "HTTP/1.1 500 Internal Server Error\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Content-Length: 14\r\n"
                                   "Connection: close\r\n"
                                   "\r\n"
                                   "out of memory\n";

static void count_status(tm_http_server_t *srv, int status)
{
    srv->stats.requests++;
    if (status >= 200 && status < 300)
        srv->stats.status_2xx++;
    else if (status >= 400 && status < 500)
        srv->stats.status_4xx++;
    else if (status >= 500)
        srv->stats.status_5xx++;
}

/* Ends the handler's hold; true when the reply must be dropped. */
static bool reply_begin(tm_http_req_t *r)
{
    tm_http_server_t *srv = r->srv;
    if (r->held) {
        r->held = false;
        srv->held--;
    }
    if (r->conn != NULL)
        return false;
    /* The client went away: nothing to write, nobody else refers to r. */
    tm_http__req_free(r);
    tm_http__server_maybe_done(srv);
    return true;
}

/* The headers of a response into buf (which has room: see head_size). */
static size_t put_head(const tm_http_req_t *r, char *buf, size_t cap, int status, const char *ctype, size_t len)
{
    const char *reason = http_status_str((enum http_status)status);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: %s\r\n"
                     "%.*s\r\n",
                     status, reason, ctype, len, r->keep_alive ? "keep-alive" : "close", (int)r->extra_len,
                     r->extra ? r->extra : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Room for put_head: the fixed text with the longest reason and length. */
static size_t head_size(const tm_http_req_t *r, const char *ctype)
{
    return 256 + strlen(ctype) + r->extra_len;
}

/* Hand the finished response to the connection. */
static void reply_end(tm_http_req_t *r, int status)
{
    r->status = status;
    r->state = TM_HTTP_RS_REPLIED;
    count_status(r->srv, status);
    tm_http__conn_flush(r->conn);
}

static void reply_oom(tm_http_req_t *r)
{
    tm_error("api: %s: out of memory for the response to %s %s", r->conn->peer, r->method, r->path);
    r->keep_alive = false;
    r->out = tm_malloc(sizeof oom_response - 1);
    if (r->out != NULL) {
        memcpy(r->out, oom_response, sizeof oom_response - 1);
        r->out_len = sizeof oom_response - 1;
    }
    /* Without even that, the connection ends without a response. */
    reply_end(r, 500);
}

/* tm_http__reply_raw after reply_begin. */
static void reply_raw_begun(tm_http_req_t *r, int status, const char *content_type, const char *body,
                                     size_t len)
{
    size_t blen = r->head ? 0 : len;
    size_t cap = head_size(r, content_type) + blen;
    char *out = tm_malloc(cap);
    if (out == NULL) {
        reply_oom(r);
        return;
    }
    size_t hlen = put_head(r, out, cap, status, content_type, len);
    if (hlen == 0) {
        tm_free(out);
        reply_oom(r);
        return;
    }
    memcpy(out + hlen, body, blen);
    r->out = out;
    r->out_len = hlen + blen;
    reply_end(r, status);
}

void tm_http__reply_raw(tm_http_req_t *r, int status, const char *content_type, const char *body, size_t len)
{
    if (reply_begin(r))
        return;
    reply_raw_begun(r, status, content_type, body, len);
}

void tm_http_reply_text(tm_http_req_t *req, int status, const char *content_type, const char *text, size_t len)
{
    tm_http__reply_raw(req, status, content_type, text, len);
}

void tm_http_reply_json(tm_http_req_t *req, int status, json_t *body)
{
    if (!json_is_object(body)) {
        json_decref(body);
        /* Not through reply_error, which comes here when it has no memory. */
        tm_error("api: the reply to %s %s is not a JSON object (a handler's bug, or no memory)", req->method,
                 req->path);
        const char *b = req->srv->internal_body;
        tm_http__reply_raw(req, 500, "application/json", b, strlen(b));
        return;
    }
    if (reply_begin(req))
        goto out_body;
    /* "appliance" first, then the handler's members (its own "appliance",
     * if any, is overwritten in place). */
    json_t *obj = json_object();
    json_t *id = json_string(req->srv->appliance);
    if (obj == NULL || id == NULL || json_object_set_new(obj, "appliance", id) != 0 ||
        json_object_update(obj, body) != 0 ||
        json_object_set_new(obj, "appliance", json_string(req->srv->appliance)) != 0) {
        json_decref(obj);
        reply_oom(req);
        goto out_body;
    }
    static const char ctype[] = "application/json";
    size_t jlen = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    if (jlen == 0) {
        /* jansson refuses to dump a string that is not UTF-8 (one made
         * with json_stringn_nocheck): the handler's bug. */
        json_decref(obj);
        tm_error("api: the reply to %s %s cannot be written as JSON", req->method, req->path);
        const char *b = req->srv->internal_body;
        reply_raw_begun(req, 500, ctype, b, strlen(b));
        goto out_body;
    }
    size_t blen = jlen + 1; /* and a newline, for people reading curl's output */
    size_t cap = head_size(req, ctype) + blen;
    char *out = tm_malloc(cap);
    if (out == NULL) {
        json_decref(obj);
        reply_oom(req);
        goto out_body;
    }
    size_t hlen = put_head(req, out, cap, status, ctype, blen);
    if (hlen == 0) {
        tm_free(out);
        json_decref(obj);
        reply_oom(req);
        goto out_body;
    }
    if (!req->head) {
        json_dumpb(obj, out + hlen, jlen, JSON_COMPACT);
        out[hlen + jlen] = '\n';
    }
    json_decref(obj);
    req->out = out;
    req->out_len = hlen + (req->head ? 0 : blen);
    reply_end(req, status);
out_body:
    json_decref(body);
}

/* Replace every byte that is not part of well-formed UTF-8 with '?', so that
 * json_string() takes the text (messages may quote what a client sent). */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : 4;
        bool ok = n < 4 && (n != 1 || *p >= 0xc2) && (n != 3 || *p <= 0xf4);
        for (unsigned i = 1; ok && i <= n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 2) {
            unsigned cp = ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        } else if (ok && n == 3) {
            unsigned cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

void tm_http_reply_error(tm_http_req_t *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = n >= 0 ? tm_malloc((size_t)n + 1) : NULL;
    if (msg != NULL)
        vsnprintf(msg, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (msg != NULL)
        utf8_sanitize(msg);
    /* One line per refused request; a 5xx is the appliance's own failure
     * (whoever replied logged its cause). */
    tm_log_level_t level = status >= 500 ? TM_LOG_WARN : TM_LOG_INFO;
    if (req->headers_done)
        tm_log(level, "api: %s: %s %s: %d %s: %s", tm_http_peer(req), req->method, req->path, status, code,
               msg ? msg : "");
    else
        tm_log(level, "api: %s: %d %s: %s", tm_http_peer(req), status, code, msg ? msg : "");

    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg ? msg : "(no memory for the message)");
    json_t *body = err ? json_pack("{s:o}", "error", err) : NULL;
    tm_free(msg);
    /* NULL (no memory) becomes a 500 in reply_json. */
    tm_http_reply_json(req, status, body);
}

int tm_http_add_header(tm_http_req_t *req, const char *name, const char *value)
{
    if (name[0] == '\0' || strpbrk(name, "\r\n: \t") != NULL || strpbrk(value, "\r\n") != NULL)
        return -EINVAL;
    size_t nl = strlen(name), vl = strlen(value);
    char *p = tm_realloc(req->extra, req->extra_len + nl + vl + 4);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p + req->extra_len, name, nl);
    memcpy(p + req->extra_len + nl, ": ", 2);
    memcpy(p + req->extra_len + nl + 2, value, vl);
    memcpy(p + req->extra_len + nl + 2 + vl, "\r\n", 2);
    req->extra = p;
    req->extra_len += nl + vl + 4;
    return 0;
}
