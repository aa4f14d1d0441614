/*
 * The points stage's life cycle and the calls other threads make: open and
 * close, stats, machines, waiting for the processor, and `latest`.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "points/pts_int.h"

#include <xxhash.h>

const char *pts_kind_name(pts_kind_t k)
{
    switch (k) {
    case PTS_KIND_CRASH:
        return "crash";
    case PTS_KIND_APP:
        return "app";
    case PTS_KIND_CUSTOM:
        return "custom";
    }
    return "unknown";
}

static size_t pts__name_slot(const char *name, size_t cap)
{
    return (size_t)XXH3_64bits(name, strlen(name)) & (cap - 1);
}

uint32_t pts__name_find(const pts_t *p, const char *name)
{
    if (!p->names_cap)
        return 0;
    for (size_t i = pts__name_slot(name, p->names_cap);; i = (i + 1) & (p->names_cap - 1)) {
        uint32_t id = p->names[i];
        if (id == 0)
            return 0;
        /* priv holds every machine that has an id; its name never changes */
        if (strcmp(p->priv[id - 1].m.name, name) == 0)
            return id;
    }
}

int pts__name_add(pts_t *p, uint32_t id, const char *name)
{
    /* keep the table at most half full */
    if ((size_t)id * 2 > p->names_cap) {
        size_t cap = p->names_cap ? p->names_cap * 2 : 64;
        while ((size_t)id * 2 > cap)
            cap *= 2;
        uint32_t *t = tm_calloc(cap, sizeof *t);
        if (!t)
            return -ENOMEM;
        for (size_t i = 0; i < p->names_cap; i++) {
            uint32_t old = p->names[i];
            if (!old)
                continue;
            size_t j = pts__name_slot(p->priv[old - 1].m.name, cap);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = old;
        }
        tm_free(p->names);
        p->names = t;
        p->names_cap = cap;
    }
    size_t j = pts__name_slot(name, p->names_cap);
    while (p->names[j])
        j = (j + 1) & (p->names_cap - 1);
    p->names[j] = id;
    return 0;
}

int pts_open(const char *index_dir, jnl_t *jnl, const pts_options_t *opts, pts_t **out, char *err, size_t errlen)
{
    pts_t *p = tm_calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->jnl = jnl;
    uint32_t cadence = opts && opts->cadence_ms ? opts->cadence_ms : PTS_DEFAULT_CADENCE_MS;
    p->cadence_ns = (uint64_t)cadence * 1000000u;
    p->next_id = 1;
    p->next_lsn = 1;
    p->retention_ns = opts && opts->retention_ns ? opts->retention_ns : PTS_DEFAULT_RETENTION_NS;
    p->retain_every_ns = (uint64_t)(opts && opts->retain_every_ms ? opts->retain_every_ms : 10000u) * 1000000u;
    p->auto_retain = opts && opts->base_dir && !opts->no_auto_retain;
    p->retire_journal = opts && opts->retire_journal;
    p->reserve_bytes = opts && opts->reserve_bytes ? opts->reserve_bytes : PTS_DEFAULT_RESERVE;
    pthread_mutex_init(&p->wmu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);

    int rc = -ENOMEM;
    if (opts && opts->base_dir && !(p->base_dir = tm_strdup(opts->base_dir))) {
        snprintf(err, errlen, "out of memory");
        goto out_fail;
    }
    if (opts && opts->nper_machine) {
        p->per = tm_calloc(opts->nper_machine, sizeof *p->per);
        if (!p->per) {
            snprintf(err, errlen, "out of memory");
            goto out_fail;
        }
        for (size_t i = 0; i < opts->nper_machine; i++) {
            p->per[i].window_ns = opts->per_machine[i].window_ns;
            p->per[i].machine = tm_strdup(opts->per_machine[i].machine);
            p->nper++;
            if (!p->per[i].machine) {
                snprintf(err, errlen, "out of memory");
                goto out_fail;
            }
        }
    }
    p->wb = pts_wb_new();
    p->recs = tm_malloc(sizeof *p->recs);
    if (!p->wb || !p->recs) {
        snprintf(err, errlen, "out of memory");
        goto out_fail;
    }
    rc = pts_index_open(index_dir, &p->ix, err, errlen);
    if (rc)
        goto out_fail;
    rc = pts__load(p, err, errlen);
    if (rc)
        goto out_fail;
    rc = jnl_reader_open(jnl, p->next_lsn, &p->rd);
    if (rc) {
        if (rc == TM_ERETIRED)
            snprintf(err, errlen,
                     "the index was processed up to journal record %" PRIu64
                     " but the journal no longer holds it (was the index restored from an old copy?)",
                     p->next_lsn);
        else
            snprintf(err, errlen, "cannot read the journal from record %" PRIu64 ": %s", p->next_lsn,
                     tm_strerror(rc));
        goto out_fail;
    }
    p->stats.next_lsn = p->next_lsn;
    p->pub_pos = p->next_pos;
    p->pub_last_ns = p->last_ns;
    rc = pthread_create(&p->thread, NULL, pts__run, p);
    if (rc) {
        snprintf(err, errlen, "cannot start the processor thread: %s", strerror(rc));
        rc = -rc;
        goto out_fail;
    }
    p->started = true;
    *out = p;
    return 0;
out_fail:
    pts_close(p);
    return rc;
}

void pts_close(pts_t *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    if (p->rd)
        jnl_reader_close(p->rd);
    pts_index_close(p->ix);
    pts_wb_free(p->wb);
    tm_free(p->recs);
    tm_free(p->pend);
    tm_free(p->priv);
    tm_free(p->dirty);
    tm_free(p->pub);
    tm_free(p->names);
    tm_free(p->pins);
    for (size_t i = 0; i < p->nper; i++)
        tm_free((char *)p->per[i].machine);
    tm_free(p->per);
    tm_free(p->base_dir);
    pts__groups_free(p);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->wmu);
    tm_free(p);
}

pts_index_t *pts_index(pts_t *p)
{
    return p->ix;
}

void pts_get_stats(pts_t *p, pts_stats_t *st)
{
    jnl_stats_t js;
    jnl_get_stats(p->jnl, &js);
    pthread_mutex_lock(&p->mu);
    *st = p->stats;
    jnl_pos_t pos = p->pub_pos;
    uint64_t last = p->pub_last_ns;
    pthread_mutex_unlock(&p->mu);
    st->durable_lsn = js.durable_lsn;
    st->lag_records = js.durable_lsn >= st->next_lsn ? js.durable_lsn - st->next_lsn + 1 : 0;
    /* (never wmu here: a cycle holds it for up to a second, and the API
     * asks from its event loop) */
    uint64_t now = tm_now_ns();
    st->lag_ns = st->lag_records && now > last ? now - last : 0;
    st->lag_bytes = st->lag_records ? jnl_bytes_after(p->jnl, pos) : 0;
}

static void pts__deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int pts_sync(pts_t *p, int timeout_ms)
{
    uint64_t t0 = tm_mono_ns();
    jnl_stats_t js;
    jnl_get_stats(p->jnl, &js);
    /* "received" includes appends still on their way to the disk */
    uint64_t target = js.next_lsn ? js.next_lsn - 1 : 0;
    if (target == 0)
        return 0;
    int rc = jnl_wait_durable(p->jnl, target, timeout_ms);
    if (rc)
        return rc == TM_ECLOSED ? rc : -ETIMEDOUT;
    int left = timeout_ms - (int)((tm_mono_ns() - t0) / 1000000u);
    struct timespec dl;
    pts__deadline(&dl, left > 0 ? left : 0);
    pthread_mutex_lock(&p->mu);
    rc = 0;
    while (p->stats.next_lsn <= target && !p->stats.error && !p->stop && !p->stats.paused) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) == ETIMEDOUT) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    if (p->stats.error)
        rc = p->stats.error;
    else if (p->stats.paused && p->stats.next_lsn <= target)
        rc = -ENOSPC;
    else if (p->stop && p->stats.next_lsn <= target)
        rc = TM_ECLOSED;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int pts_machine(pts_t *p, const char *name, pts_machine_t *out)
{
    pthread_mutex_lock(&p->mu);
    uint32_t id = pts__name_find(p, name);
    int rc = TM_ENOTFOUND;
    if (id && id <= p->npub) {
        *out = p->pub[id - 1].m;
        rc = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int pts__by_name(const void *a, const void *b)
{
    return strcmp(((const pts_machine_t *)a)->name, ((const pts_machine_t *)b)->name);
}

int pts_machines(pts_t *p, pts_machine_t **out, size_t *n)
{
    uint64_t next;
    return pts_machines_at(p, out, n, &next);
}

int pts_machines_at(pts_t *p, pts_machine_t **out, size_t *n, uint64_t *next_lsn)
{
    pthread_mutex_lock(&p->mu);
    *next_lsn = p->stats.next_lsn;
    size_t cnt = p->npub;
    pts_machine_t *v = tm_malloc((cnt ? cnt : 1) * sizeof *v);
    if (v) {
        for (size_t i = 0; i < cnt; i++)
            v[i] = p->pub[i].m;
    }
    pthread_mutex_unlock(&p->mu);
    if (!v)
        return -ENOMEM;
    qsort(v, cnt, sizeof *v, pts__by_name);
    *out = v;
    *n = cnt;
    return 0;
}

int pts_cut_latest(pts_t *p, const char *machine, int timeout_ms, pts_point_t *out)
{
    /* Processing first: the machine's first records may still be in the
     * backlog, and then the index does not know it yet. */
    int rc = pts_sync(p, timeout_ms);
    if (rc)
        return rc;
    pthread_mutex_lock(&p->mu);
    uint32_t id = pts__name_find(p, machine);
    pthread_mutex_unlock(&p->mu);
    if (!id)
        return TM_ENOTFOUND;
    pthread_mutex_lock(&p->wmu);
    pts_mrec_t *r = &p->priv[id - 1];
    if (r->m.seq == 0 || r->m.failover == PTS_FO_COMMITTED || (!pts__consistent(r) && !r->m.has_point)) {
        rc = TM_ENOPOINT;
    } else if (!pts__consistent(r)) {
        /* a copy is under way: the newest consistent point is the latest */
        *out = r->m.latest;
    } else {
        if (pts__cut(p, r, PTS_KIND_CRASH, NULL, 0, r->m.seq, r->m.seq_ns))
            rc = pts__commit(p);
        if (rc == 0)
            *out = r->m.latest;
    }
    pthread_mutex_unlock(&p->wmu);
    return rc;
}
