/* Journal helpers for the tests; the contracts are in tmt_jnl.h. */
#include "tmt_jnl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "base/err.h"

void tmt_group_init(tmt_group_t *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
}

void tmt_group_destroy(tmt_group_t *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void tmt__done(jnl_append_req_t *req, int status)
{
    tmt_req_t *r = req->data;
    tmt_group_t *g = r->group;
    pthread_mutex_lock(&g->mu);
    r->status = status;
    r->calls++;
    g->pending--;
    if (status == 0)
        g->acked++;
    else
        g->failed++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int tmt_appendv(tmt_group_t *g, tmt_req_t *r, jnl_t *j, uint8_t type, const jnl_buf_t *bufs, unsigned nbufs,
                unsigned flags)
{
    r->group = g;
    r->req.data = r;
    r->status = 1; /* no callback yet */
    r->calls = 0;
    /* Counted before the call: the callback may run before jnl_append returns. */
    pthread_mutex_lock(&g->mu);
    g->pending++;
    pthread_mutex_unlock(&g->mu);
    int rc = jnl_append(j, &r->req, type, bufs, nbufs, flags, tmt__done);
    if (rc != 0) {
        pthread_mutex_lock(&g->mu);
        g->pending--;
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

int tmt_append(tmt_group_t *g, tmt_req_t *r, jnl_t *j, uint8_t type, const void *data, size_t len,
               unsigned flags)
{
    jnl_buf_t b = {data, len};
    return tmt_appendv(g, r, j, type, &b, 1, flags);
}

bool tmt_group_wait(tmt_group_t *g, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->pending > 0 && rc == 0)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    bool done = g->pending == 0;
    pthread_mutex_unlock(&g->mu);
    return done;
}

size_t tmt_read_all(jnl_t *j, uint64_t from_lsn, tmt_rec_t **out)
{
    jnl_reader_t *r = NULL;
    int rc = jnl_reader_open(j, from_lsn, &r);
    cr_assert_eq(rc, 0, "jnl_reader_open(%llu): %s", (unsigned long long)from_lsn, tm_strerror(rc));
    size_t n = 0, cap = 64;
    tmt_rec_t *recs = calloc(cap, sizeof *recs);
    for (;;) {
        jnl_record_t rec;
        rc = jnl_reader_next(r, &rec);
        if (rc == -EAGAIN)
            break;
        cr_assert_eq(rc, 0, "jnl_reader_next after %zu records: %s", n, tm_strerror(rc));
        if (n == cap) {
            cap *= 2;
            recs = realloc(recs, cap * sizeof *recs);
        }
        tmt_rec_t *t = &recs[n++];
        t->lsn = rec.lsn;
        t->type = rec.type;
        t->pos = rec.pos;
        t->stored_len = rec.stored_len;
        t->compressed = rec.compressed;
        t->len = rec.len;
        t->data = malloc(rec.len + 1u);
        if (rec.len > 0)
            memcpy(t->data, rec.data, rec.len);
    }
    jnl_reader_close(r);
    *out = recs;
    return n;
}

void tmt_recs_free(tmt_rec_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(recs[i].data);
    free(recs);
}

jnl_t *tmt_open(const char *dir, const jnl_options_t *opts)
{
    jnl_t *j = NULL;
    int rc = jnl_open(dir, opts, &j);
    cr_assert_eq(rc, 0, "jnl_open(%s): %s (%s)", dir, tm_strerror(rc), tm_errname(rc));
    cr_assert_not_null(j);
    return j;
}
