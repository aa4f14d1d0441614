/*
 * A request: its URL and headers as http-parser hands them over, the checks
 * between the end of the headers and the handler (path and query decoding,
 * routing, the token, the body's size and type, its JSON), and what
 * handlers read of it.
 */
#include "api/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* Which piece of the head the last bytes belonged to. */
enum { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

tm_http_req_t *tm_http__req_new(tm_http_server_t *srv, tm_http_conn_t *c)
{
    tm_http_req_t *r = tm_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->srv = srv;
    r->conn = c;
    r->state = TM_HTTP_RS_PARSING;
    r->method = "?";
    r->path = "";
    return r;
}

void tm_http__req_free(tm_http_req_t *r)
{
    if (r == NULL)
        return;
    tm_free(r->hbuf);
    tm_free(r->hoff);
    tm_free(r->dbuf);
    tm_free(r->query);
    tm_free(r->body);
    json_decref(r->json);
    tm_free(r->extra);
    tm_free(r->out);
    tm_free(r);
}

/* ---- the head, piece by piece -------------------------------------------------- */

static int head_put(tm_http_req_t *r, const char *at, size_t len)
{
    /* The connection feeds at most TM_HTTP_MAX_HEADER_BYTES + 1 bytes of
     * head, and every stored byte (terminators included) stands for at
     * least one of them, with a little slack for an empty value's NUL. */
    if (r->hlen + len + 1 > 2 * (size_t)TM_HTTP_MAX_HEADER_BYTES)
        return TM_ETOOBIG;
    if (r->hlen + len + 1 > r->hcap) {
        size_t cap = r->hcap ? r->hcap : 512;
        while (cap < r->hlen + len + 1)
            cap *= 2;
        char *p = tm_realloc(r->hbuf, cap);
        if (p == NULL)
            return -ENOMEM;
        r->hbuf = p;
        r->hcap = cap;
    }
    memcpy(r->hbuf + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

static int head_nul(tm_http_req_t *r)
{
    return head_put(r, "", 1);
}

static unsigned piece_of(const tm_http_req_t *r)
{
    return r->in_value ? PIECE_VALUE : r->nhdr > 0 ? PIECE_FIELD : r->hlen > 0 ? PIECE_URL : PIECE_NONE;
}

/* Terminate the open piece: a name without a value gets "" as its value, a
 * value loses its trailing blanks (http-parser keeps them). */
static int head_close_piece(tm_http_req_t *r)
{
    switch (piece_of(r)) {
    case PIECE_FIELD: {
        size_t *o = r->hoff[r->nhdr - 1];
        if (o[1] != 0)
            return 0; /* already closed */
        int rc = head_nul(r);
        o[1] = r->hlen;
        return rc ? rc : head_nul(r);
    }
    case PIECE_VALUE: {
        size_t start = r->hoff[r->nhdr - 1][1];
        while (r->hlen > start && (r->hbuf[r->hlen - 1] == ' ' || r->hbuf[r->hlen - 1] == '\t'))
            r->hlen--;
        r->in_value = false;
        return head_nul(r);
    }
    case PIECE_URL:
        return r->hbuf[r->hlen - 1] == '\0' ? 0 : head_nul(r);
    default:
        return 0;
    }
}

int tm_http__req_add_url(tm_http_req_t *r, const char *at, size_t len)
{
    return head_put(r, at, len);
}

int tm_http__req_add_field(tm_http_req_t *r, const char *at, size_t len)
{
    /* Trailers of a chunked body: dropped (no handler needs them). */
    if (r->headers_done)
        return 0;
    unsigned piece = piece_of(r);
    if (piece != PIECE_FIELD || r->hoff[r->nhdr - 1][1] != 0) {
        int rc = head_close_piece(r);
        if (rc == 0)
            rc = tm_grow((void **)&r->hoff, &r->hdrcap, r->nhdr + 1, sizeof r->hoff[0]);
        if (rc)
            return rc;
        r->hoff[r->nhdr][0] = r->hlen;
        r->hoff[r->nhdr][1] = 0;
        r->nhdr++;
    }
    return head_put(r, at, len);
}

int tm_http__req_add_value(tm_http_req_t *r, const char *at, size_t len)
{
    if (r->headers_done)
        return 0;
    if (r->nhdr == 0)
        return TM_EINVAL;
    if (!r->in_value) {
        int rc = head_nul(r);
        if (rc)
            return rc;
        r->hoff[r->nhdr - 1][1] = r->hlen;
        r->in_value = true;
    }
    return head_put(r, at, len);
}

/* ---- what handlers read ------------------------------------------------------- */

const char *tm_http_method(const tm_http_req_t *req)
{
    return req->method;
}

const char *tm_http_path(const tm_http_req_t *req)
{
    return req->path;
}

const char *tm_http_param(const tm_http_req_t *req, const char *name)
{
    for (unsigned i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

const char *tm_http_query(const tm_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nquery; i++)
        if (strcmp(req->query[i].name, name) == 0)
            return req->query[i].value;
    return NULL;
}

size_t tm_http_query_count(const tm_http_req_t *req)
{
    return req->nquery;
}

void tm_http_query_at(const tm_http_req_t *req, size_t i, const char **name, const char **value)
{
    *name = i < req->nquery ? req->query[i].name : NULL;
    *value = i < req->nquery ? req->query[i].value : NULL;
}

const char *tm_http_header(const tm_http_req_t *req, const char *name)
{
    if (!req->headers_done)
        return NULL;
    for (size_t i = 0; i < req->nhdr; i++)
        if (strcasecmp(req->hbuf + req->hoff[i][0], name) == 0)
            return req->hbuf + req->hoff[i][1];
    return NULL;
}

const uint8_t *tm_http_body(const tm_http_req_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body_len ? req->body : NULL;
}

json_t *tm_http_json(const tm_http_req_t *req)
{
    return req->json;
}

const char *tm_http_peer(const tm_http_req_t *req)
{
    return req->conn ? req->conn->peer : "(gone)";
}

bool tm_http_client_gone(const tm_http_req_t *req)
{
    return req->conn == NULL;
}

/* ---- decoding ------------------------------------------------------------------ */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* %-decode s[0..len) to *out (NUL-terminated, advancing *out). plus: '+'
 * is a space (query strings). false on a malformed escape or a NUL. */
static bool pct_decode(const char *s, size_t len, bool plus, char **out)
{
    char *o = *out;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0')
                return false;
            i += 2;
        } else if (ch == '+' && plus) {
            ch = ' ';
        }
        *o++ = ch;
    }
    *o++ = '\0';
    *out = o;
    return true;
}

/* Split the query into decoded name/value pairs; empty pairs are skipped. */
static bool decode_query(tm_http_req_t *r, const char *q, size_t len, char **d)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += q[i] == '&';
    r->query = tm_calloc(n, sizeof r->query[0]);
    if (r->query == NULL)
        return false;
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if (stop > q) {
            const char *eq = memchr(q, '=', (size_t)(stop - q));
            tm_http_kv_t *kv = &r->query[r->nquery];
            kv->name = *d;
            if (!pct_decode(q, (size_t)((eq ? eq : stop) - q), true, d))
                return false;
            kv->value = *d;
            if (!pct_decode(eq ? eq + 1 : stop, eq ? (size_t)(stop - eq - 1) : 0, true, d))
                return false;
            r->nquery++;
        }
        q = amp ? amp + 1 : end;
    }
    return true;
}

/* ---- checks at the end of the headers --------------------------------------------- */

static void fail(tm_http_req_t *r, int status, const char *code, const char *what)
{
    tm_http_reply_error(r, status, code, "%s", what);
}

/* Bearer token, compared in time independent of the bytes: the token's
 * length is not a secret (docs/api.md gives it). */
static bool token_ok(const tm_http_req_t *r, const char *auth)
{
    const tm_http_server_t *srv = r->srv;
    if (strncasecmp(auth, "Bearer", 6) != 0 || (auth[6] != ' ' && auth[6] != '\t'))
        return false;
    const char *t = auth + 7;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t n = strlen(t);
    unsigned diff = n != srv->token_len;
    for (size_t i = 0; i < srv->token_len; i++)
        diff |= (unsigned char)srv->token[i] ^ (unsigned char)(i < n ? t[i] : 0);
    return diff == 0;
}

static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* The path into decoded segments, the query into pairs. false: replied. */
static bool decode_target(tm_http_req_t *r, const http_parser *p, char **segs, unsigned *nsegs)
{
    const char *url = r->hbuf ? r->hbuf + r->url_off : "";
    size_t ulen = strlen(url);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (ulen == 0 || http_parser_parse_url(url, ulen, p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH)) || u.field_data[UF_PATH].len == 0 || url[u.field_data[UF_PATH].off] != '/') {
        fail(r, 400, "bad-request", "the request target is not a path");
        return false;
    }
    const char *path = url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    r->dbuf = tm_malloc(3 * ulen + 16);
    if (r->dbuf == NULL) {
        fail(r, 500, "internal", "out of memory");
        return false;
    }
    char *d = r->dbuf;
    memcpy(d, path, plen);
    d[plen] = '\0';
    r->path = d;
    d += plen + 1;

    *nsegs = 0;
    const char *s = path + 1, *end = path + plen;
    while (plen > 1 && s <= end) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *stop = slash ? slash : end;
        if (*nsegs == TM_HTTP_MAX_SEGMENTS) {
            tm_http_reply_error(r, 404, "not-found", "no such path: %s", r->path);
            return false;
        }
        segs[(*nsegs)++] = d;
        if (!pct_decode(s, (size_t)(stop - s), false, &d)) {
            fail(r, 400, "bad-request", "the path has a malformed %-escape or an escaped NUL");
            return false;
        }
        s = stop + 1;
    }
    if ((u.field_set & (1u << UF_QUERY)) &&
        !decode_query(r, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len, &d)) {
        if (r->query == NULL)
            fail(r, 500, "internal", "out of memory");
        else
            fail(r, 400, "bad-request", "the query has a malformed %-escape or an escaped NUL");
        return false;
    }
    return true;
}

bool tm_http__req_check_headers(tm_http_req_t *r, const http_parser *p)
{
    if (head_close_piece(r) != 0) {
        fail(r, 500, "internal", "out of memory");
        return false;
    }
    r->headers_done = true;
    r->method = http_method_str((enum http_method)p->method);
    r->head = p->method == HTTP_HEAD;
    /* An answer before the body was read ends the connection: the body
     * would have to be read and dropped to find the next request. An
     * upgrade (or CONNECT) is never granted, and the connection ends. */
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = (p->flags & F_CONTENTLENGTH) != 0;
    bool has_body = chunked || (has_len && p->content_length > 0);
    bool upgrade = (p->flags & F_UPGRADE) || p->method == HTTP_CONNECT;
    bool keep_alive = http_should_keep_alive(p) != 0 && !upgrade;
    r->keep_alive = keep_alive && !has_body;

    char *segs[TM_HTTP_MAX_SEGMENTS];
    unsigned nsegs = 0;
    if (!decode_target(r, p, segs, &nsegs))
        return false;

    char allow[256];
    const tm_http_rt_t *rt = NULL;
    switch (tm_http__router_match(&r->srv->router, r->method, segs, nsegs, &rt, allow, sizeof allow)) {
    case TM_HTTP_MATCH_NONE:
        tm_http_reply_error(r, 404, "not-found", "no such path: %s", r->path);
        return false;
    case TM_HTTP_MATCH_METHOD:
        if (tm_http_add_header(r, "Allow", allow) != 0) {
            fail(r, 500, "internal", "out of memory");
            return false;
        }
        tm_http_reply_error(r, 405, "method-not-allowed", "%s is not allowed on %s (allowed: %s)", r->method, r->path,
                            allow);
        return false;
    case TM_HTTP_MATCH_OK:
        break;
    }
    r->route = rt;
    for (unsigned i = 0, k = 0; i < rt->nsegs; i++) {
        if (rt->segs[i].param) {
            r->params[k].name = rt->segs[i].text;
            r->params[k].value = segs[i];
            r->nparams = ++k;
        }
    }

    if (!rt->public) {
        const char *auth = tm_http_header(r, "Authorization");
        if (auth == NULL || !token_ok(r, auth)) {
            if (tm_http_add_header(r, "WWW-Authenticate", "Bearer realm=\"tidemark\"") != 0) {
                fail(r, 500, "internal", "out of memory");
                return false;
            }
            fail(r, 401, "unauthorized",
                 auth == NULL ? "this path needs \"Authorization: Bearer TOKEN\"; the token is in DATA/api.token"
                              : "the bearer token is not this appliance's (see DATA/api.token)");
            return false;
        }
    }

    if (has_len && p->content_length > TM_HTTP_MAX_BODY) {
        tm_http_reply_error(r, 413, "too-large", "the body is %llu bytes; at most %u are accepted",
                            (unsigned long long)p->content_length, TM_HTTP_MAX_BODY);
        return false;
    }
    if (has_body) {
        const char *ct = tm_http_header(r, "Content-Type");
        if (ct == NULL || !is_json_type(ct)) {
            tm_http_reply_error(r, 415, "unsupported-media-type", "the body must be application/json, not %s",
                                ct ? ct : "untyped");
            return false;
        }
    }
    r->keep_alive = keep_alive;
    return true;
}

bool tm_http__req_check_body(tm_http_req_t *r)
{
    if (r->body_len == 0)
        return true;
    json_error_t err;
    r->json = json_loadb((const char *)r->body, r->body_len, 0, &err);
    if (r->json == NULL) {
        tm_http_reply_error(r, 400, "bad-request", "the body is not valid JSON: %s (line %d, column %d)", err.text,
                            err.line, err.column);
        return false;
    }
    return true;
}
