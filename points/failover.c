/*
 * Failover records (points.h, "Failovers"): one "F" key per machine that is
 * failed over or committed (keys.h). The index holds them, not a file of
 * their own, because a commit must delete the machine's points and say it
 * is committed in one atomic batch: a crash can never leave a machine
 * without points that does not know it was committed.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/log.h"
#include "points/pts_int.h"

const char *pts_fo_state_name(pts_fo_state_t s)
{
    switch (s) {
    case PTS_FO_ACTIVE:
        return "failed-over";
    case PTS_FO_COMMITTED:
        return "committed";
    default:
        return "none";
    }
}

static void pts__fo_key(uint8_t k[5], uint32_t mid)
{
    pts_key_prefix(k, PTS_K_FAILOVER, mid);
}

static void pts__fo_val(uint8_t v[PTS_FAILOVER_VAL_LEN], uint8_t state, uint64_t seq, uint64_t ns)
{
    memset(v, 0, PTS_FAILOVER_VAL_LEN);
    tm_put16(v, 1);
    v[2] = state;
    tm_put64(v + 8, seq);
    tm_put64(v + 16, ns);
}

/* The machine's record, both copies (priv under wmu, pub under mu). */
static void pts__fo_publish(pts_t *p, pts_mrec_t *r)
{
    pthread_mutex_lock(&p->mu);
    pts_machine_t *pm = &p->pub[r->m.id - 1].m;
    pm->failover = r->m.failover;
    pm->failover_seq = r->m.failover_seq;
    pm->failover_ns = r->m.failover_ns;
    pthread_mutex_unlock(&p->mu);
}

int pts__load_failovers(pts_t *p, char *err, size_t errlen)
{
    uint8_t lo[1] = {PTS_K_FAILOVER}, hi[1] = {PTS_K_FAILOVER + 1};
    pts_iter_t *it = pts_iter_new(p->ix, lo, 1, hi, 1);
    if (!it)
        return -ENOMEM;
    int rc = 0;
    for (pts_iter_first(it); pts_iter_valid(it); pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t mid = kl == 5 ? tm_get_be32(k + 1) : 0;
        if (kl != 5 || vl != PTS_FAILOVER_VAL_LEN || tm_get16(v) != 1 || mid == 0 || mid > p->nmach ||
            (v[2] != PTS_FO_ACTIVE && v[2] != PTS_FO_COMMITTED)) {
            snprintf(err, errlen, "a failover record of the index does not parse");
            rc = TM_ECORRUPT;
            break;
        }
        pts_mrec_t *r = &p->priv[mid - 1];
        r->m.failover = v[2];
        r->m.failover_seq = tm_get64(v + 8);
        r->m.failover_ns = tm_get64(v + 16);
        p->pub[mid - 1].m.failover = r->m.failover;
        p->pub[mid - 1].m.failover_seq = r->m.failover_seq;
        p->pub[mid - 1].m.failover_ns = r->m.failover_ns;
        /* the served point outlives the process that failed over */
        if (r->m.failover == PTS_FO_ACTIVE && (rc = pts_pin(p, mid, r->m.failover_seq)) != 0) {
            snprintf(err, errlen, "machine %s is failed over to point %" PRIu64 ", which the index no longer holds",
                     r->m.name, r->m.failover_seq);
            rc = TM_ECORRUPT;
            break;
        }
    }
    if (rc == 0 && (rc = pts_iter_status(it)) != 0)
        snprintf(err, errlen, "the index's failover records cannot be read");
    pts_iter_free(it);
    return rc;
}

/* The machine's private record, or NULL. Under wmu. */
static pts_mrec_t *pts__fo_find(pts_t *p, const char *machine)
{
    pthread_mutex_lock(&p->mu);
    uint32_t id = pts__name_find(p, machine);
    pthread_mutex_unlock(&p->mu);
    return id ? &p->priv[id - 1] : NULL;
}

int pts_failover_set(pts_t *p, const char *machine, pts_fo_state_t state, uint64_t seq, uint64_t now_ns)
{
    if (state == PTS_FO_COMMITTED)
        return TM_EINVAL; /* pts_commit_machine's */
    pthread_mutex_lock(&p->wmu);
    int rc = 0;
    pts_mrec_t *r = pts__fo_find(p, machine);
    if (!r) {
        rc = TM_ENOTFOUND;
        goto out;
    }
    if (r->m.failover == PTS_FO_COMMITTED) {
        rc = TM_EINVAL;
        goto out;
    }
    /* pin the new point before the old goes, so the horizon never passes both */
    if (state == PTS_FO_ACTIVE && (rc = pts_pin(p, r->m.id, seq)) != 0)
        goto out;
    uint8_t k[5], v[PTS_FAILOVER_VAL_LEN];
    pts__fo_key(k, r->m.id);
    if (state == PTS_FO_ACTIVE) {
        pts__fo_val(v, PTS_FO_ACTIVE, seq, now_ns);
        pts_wb_put(p->wb, k, sizeof k, v, sizeof v);
    } else {
        pts_wb_delete(p->wb, k, sizeof k);
    }
    rc = pts__commit(p);
    if (rc == 0)
        rc = pts_index_flush(p->ix);
    if (rc) {
        if (state == PTS_FO_ACTIVE)
            pts_unpin(p, r->m.id, seq);
        goto out;
    }
    if (r->m.failover == PTS_FO_ACTIVE)
        pts_unpin(p, r->m.id, r->m.failover_seq);
    r->m.failover = (uint8_t)state;
    r->m.failover_seq = state == PTS_FO_ACTIVE ? seq : 0;
    r->m.failover_ns = state == PTS_FO_ACTIVE ? now_ns : 0;
    pts__fo_publish(p, r);
    if (state == PTS_FO_ACTIVE)
        tm_log(TM_LOG_INFO, "points: machine %s is failed over to point %" PRIu64, machine, seq);
    else
        tm_log(TM_LOG_INFO, "points: machine %s is no longer failed over", machine);
out:
    pthread_mutex_unlock(&p->wmu);
    return rc;
}

/* Pins of mid other than one at seq (the failover's own). Under mu. */
static size_t pts__other_pins(const pts_t *p, uint32_t mid, uint64_t seq)
{
    size_t n = 0;
    bool own = false;
    for (size_t i = 0; i < p->npins; i++) {
        if (p->pins[i].mid != mid)
            continue;
        if (!own && p->pins[i].seq == seq)
            own = true;
        else
            n++;
    }
    return n;
}

/* Remove base_dir/MACHINE/ and the images in it. Logged, not fatal: the
 * index no longer names them, so what is left is only wasted space. */
static void pts__remove_base(const pts_t *p, const char *machine)
{
    if (!p->base_dir)
        return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", p->base_dir, machine);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0)
            tm_warn("points: %s: cannot remove: %s", path, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) != 0)
        tm_warn("points: %s: cannot remove: %s", dir, strerror(errno));
}

static void pts__delete_prefix(pts_t *p, char tag, uint32_t mid)
{
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, tag, mid);
    pts_key_prefix(hi, tag, mid + 1);
    pts_wb_delete_range(p->wb, lo, sizeof lo, hi, sizeof hi);
}

int pts_commit_machine(pts_t *p, const char *machine, uint64_t now_ns)
{
    pthread_mutex_lock(&p->wmu);
    int rc = 0;
    pts_mrec_t *r = pts__fo_find(p, machine);
    if (!r) {
        rc = TM_ENOTFOUND;
        goto out;
    }
    if (r->m.failover != PTS_FO_ACTIVE) {
        rc = TM_EINVAL;
        goto out;
    }
    pthread_mutex_lock(&p->mu);
    size_t others = pts__other_pins(p, r->m.id, r->m.failover_seq);
    pthread_mutex_unlock(&p->mu);
    if (others) {
        rc = -EBUSY;
        goto out;
    }
    uint32_t mid = r->m.id;
    pts__delete_prefix(p, PTS_K_EXTENT, mid);
    pts__delete_prefix(p, PTS_K_POINT, mid);
    pts__delete_prefix(p, PTS_K_TIME, mid);
    pts__delete_prefix(p, PTS_K_UNSAFE, mid);
    uint8_t k[5], v[PTS_FAILOVER_VAL_LEN];
    pts__fo_key(k, mid);
    pts__fo_val(v, PTS_FO_COMMITTED, 0, now_ns);
    pts_wb_put(p->wb, k, sizeof k, v, sizeof v);
    /* the machine stays known (its name, disks and last sequence), with no
     * point and nothing before its last sequence to rebuild from */
    uint64_t pinned = r->m.failover_seq;
    r->m.has_point = false;
    r->latest_seq = 0;
    r->m.first_seq = r->m.seq + 1;
    r->m.base_seq = 0;
    r->m.failover = PTS_FO_COMMITTED;
    r->m.failover_seq = 0;
    r->m.failover_ns = now_ns;
    pts__touch(p, r);
    rc = pts__commit(p);
    if (rc == 0)
        rc = pts_index_flush(p->ix);
    if (rc)
        goto out; /* the index is failed (sticky): nothing more is written */
    pts_unpin(p, mid, pinned);
    pts__remove_base(p, machine);
    tm_log(TM_LOG_INFO, "points: machine %s's failover is committed: its points are deleted", machine);
    if (p->base_dir && p->retire_journal && (rc = pts__retire(p)) != 0)
        tm_warn("points: journal segments of committed machine %s not retired yet: %s", machine,
                tm_strerror(rc));
    rc = 0; /* the commit itself is done; retirement is retried by retention */
out:
    pthread_mutex_unlock(&p->wmu);
    return rc;
}
