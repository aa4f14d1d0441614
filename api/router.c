/*
 * The route table: patterns split into segments once, at the server's
 * creation, and matched against a request's decoded path segments. The
 * first route with the path and the method wins; a path that some route
 * has but not with this method is a 405 naming the methods that do.
 */
#include "api/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"

static void rt_free(tm_http_rt_t *r)
{
    for (unsigned i = 0; i < r->nsegs; i++)
        tm_free(r->segs[i].text);
    tm_free(r->segs);
    tm_free(r->method);
}

void tm_http__router_free(tm_http_router_t *rt)
{
    for (size_t i = 0; i < rt->n; i++)
        rt_free(&rt->v[i]);
    tm_free(rt->v);
    rt->v = NULL;
    rt->n = 0;
}

static bool method_ok(const char *m)
{
    if (m == NULL || m[0] == '\0' || strlen(m) > 32)
        return false;
    for (const char *p = m; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || *p == '-'))
            return false;
    return true;
}

/* One segment of a pattern: a literal without '{', '}', '%' or '?', or a
 * whole "{name}". */
static int parse_seg(const char *s, size_t len, tm_http_seg_t *out)
{
    if (len == 0)
        return -EINVAL;
    bool param = s[0] == '{';
    if (param) {
        if (len < 3 || s[len - 1] != '}')
            return -EINVAL;
        s++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++)
        if (s[i] == '{' || s[i] == '}' || s[i] == '%' || s[i] == '?' || s[i] == '#')
            return -EINVAL;
    out->text = tm_malloc(len + 1);
    if (out->text == NULL)
        return -ENOMEM;
    memcpy(out->text, s, len);
    out->text[len] = '\0';
    out->param = param;
    return 0;
}

static int rt_init(tm_http_rt_t *r, const tm_http_route_t *src)
{
    const char *p = src->pattern;
    if (src->handler == NULL || !method_ok(src->method) || p == NULL || p[0] != '/')
        return -EINVAL;
    r->handler = src->handler;
    r->ctx = src->ctx;
    r->public = src->public;
    r->method = tm_strdup(src->method);
    r->segs = tm_calloc(TM_HTTP_MAX_SEGMENTS, sizeof r->segs[0]);
    if (r->method == NULL || r->segs == NULL)
        return -ENOMEM;
    /* "/" alone is the root: no segment. */
    if (strcmp(p, "/") == 0)
        return 0;
    unsigned nparams = 0;
    for (p++;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (r->nsegs == TM_HTTP_MAX_SEGMENTS)
            return -EINVAL;
        int rc = parse_seg(p, len, &r->segs[r->nsegs]);
        if (rc)
            return rc;
        tm_http_seg_t *seg = &r->segs[r->nsegs++];
        if (seg->param) {
            if (++nparams > TM_HTTP_MAX_PARAMS)
                return -EINVAL;
            for (unsigned i = 0; i + 1 < r->nsegs; i++)
                if (r->segs[i].param && strcmp(r->segs[i].text, seg->text) == 0)
                    return -EINVAL;
        }
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

int tm_http__router_init(tm_http_router_t *rt, const tm_http_route_t *routes, size_t n, bool *needs_token)
{
    memset(rt, 0, sizeof *rt);
    *needs_token = false;
    if (n > TM_HTTP_MAX_ROUTES || (n > 0 && routes == NULL))
        return -EINVAL;
    if (n == 0)
        return 0;
    rt->v = tm_calloc(n, sizeof rt->v[0]);
    if (rt->v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rt->n = i + 1; /* so that a failure frees what this one got */
        int rc = rt_init(&rt->v[i], &routes[i]);
        if (rc) {
            tm_http__router_free(rt);
            return rc;
        }
        if (!routes[i].public)
            *needs_token = true;
    }
    return 0;
}

static bool path_matches(const tm_http_rt_t *r, char *const *segs, unsigned nsegs)
{
    if (r->nsegs != nsegs)
        return false;
    for (unsigned i = 0; i < nsegs; i++) {
        if (r->segs[i].param ? segs[i][0] == '\0' : strcmp(r->segs[i].text, segs[i]) != 0)
            return false;
    }
    return true;
}

tm_http_match_t tm_http__router_match(const tm_http_router_t *rt, const char *method, char *const *segs,
                                      unsigned nsegs, const tm_http_rt_t **route, char *allow, size_t allowlen)
{
    size_t alen = 0;
    bool path_seen = false;
    allow[0] = '\0';
    for (size_t i = 0; i < rt->n; i++) {
        const tm_http_rt_t *r = &rt->v[i];
        if (!path_matches(r, segs, nsegs))
            continue;
        if (strcmp(r->method, method) == 0) {
            *route = r;
            return TM_HTTP_MATCH_OK;
        }
        path_seen = true;
        /* Each method once, in table order. */
        bool listed = false;
        for (size_t j = 0; j < i && !listed; j++)
            listed = strcmp(rt->v[j].method, r->method) == 0 && path_matches(&rt->v[j], segs, nsegs);
        if (listed)
            continue;
        int w = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "", r->method);
        if (w > 0 && (size_t)w < allowlen - alen)
            alen += (size_t)w;
    }
    return path_seen ? TM_HTTP_MATCH_METHOD : TM_HTTP_MATCH_NONE;
}
