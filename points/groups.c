/*
 * Replication groups and group points (points.h, "Replication groups").
 * Membership lives in memory (the coordinator sets it from the
 * configuration and DATA/groups.json, and again on every change); group
 * points live in the index, "G" keys (keys.h), written with the members'
 * points they mark in one durable batch.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "points/pts_int.h"

/* ---- membership --------------------------------------------------------------- */

void pts__groups_free(pts_t *p)
{
    for (size_t i = 0; i < 2 * p->ngroup_of; i++)
        tm_free(p->group_of[i]);
    tm_free(p->group_of);
    p->group_of = NULL;
    p->ngroup_of = 0;
}

int pts_set_groups(pts_t *p, const pts_group_def_t *groups, size_t n)
{
    size_t total = 0;
    for (size_t g = 0; g < n; g++)
        total += groups[g].nmembers;
    char **v = tm_calloc(2 * total + 1, sizeof *v);
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (size_t g = 0; g < n; g++) {
        for (size_t i = 0; i < groups[g].nmembers; i++, k++) {
            v[2 * k] = tm_strdup(groups[g].members[i]);
            v[2 * k + 1] = tm_strdup(groups[g].name);
            if (!v[2 * k] || !v[2 * k + 1]) {
                for (size_t j = 0; j <= 2 * k + 1; j++)
                    tm_free(v[j]);
                tm_free(v);
                return -ENOMEM;
            }
        }
    }
    pthread_mutex_lock(&p->mu);
    char **old = p->group_of;
    size_t nold = p->ngroup_of;
    p->group_of = v;
    p->ngroup_of = total;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < 2 * nold; i++)
        tm_free(old[i]);
    tm_free(old);
    return 0;
}

int pts_machine_group(pts_t *p, const char *machine, char *buf, size_t len)
{
    int rc = TM_ENOTFOUND;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->ngroup_of; i++) {
        if (strcmp(p->group_of[2 * i], machine) == 0) {
            snprintf(buf, len, "%s", p->group_of[2 * i + 1]);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

bool pts__group_covers(pts_t *p, const char *group, const pts_group_point_t *gp)
{
    bool ok = true;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->ngroup_of && ok; i++) {
        if (strcmp(p->group_of[2 * i + 1], group) != 0)
            continue;
        bool in = false;
        for (size_t k = 0; k < gp->nmembers && !in; k++)
            in = strcmp(gp->members[k].machine, p->group_of[2 * i]) == 0;
        ok = in;
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* ---- keys ------------------------------------------------------------------------ */

/* "G" u8 len name [u64 round]: the group's prefix (n = 2 + len) or a key. */
static size_t pts__gkey(uint8_t *k, const char *group, bool with_round, uint64_t round)
{
    size_t n = strlen(group);
    k[0] = PTS_K_GROUP;
    k[1] = (uint8_t)n;
    memcpy(k + 2, group, n);
    if (!with_round)
        return 2 + n;
    tm_put_be64(k + 2 + n, round);
    return 10 + n;
}

#define PTS_GKEY_MAX (10u + PTS_MAX_GROUP_NAME)

static int pts__gval_parse(const uint8_t *v, size_t len, pts_group_point_t *gp)
{
    memset(gp, 0, sizeof *gp);
    if (len < 16 || (v[0] != PTS_KIND_CRASH && v[0] != PTS_KIND_APP))
        return TM_ECORRUPT;
    gp->kind = (pts_kind_t)v[0];
    size_t n = tm_get16(v + 2);
    gp->time_ns = tm_get64(v + 8);
    if (n == 0 || n > PTS_MAX_GROUP_MEMBERS)
        return TM_ECORRUPT;
    gp->members = tm_calloc(n, sizeof *gp->members);
    if (!gp->members)
        return -ENOMEM;
    size_t o = 16;
    for (size_t i = 0; i < n; i++) {
        if (o + 1 > len || v[o] == 0 || v[o] > WIRE_MAX_NAME || o + 1 + v[o] + 8 > len) {
            tm_free(gp->members);
            gp->members = NULL;
            return TM_ECORRUPT;
        }
        memcpy(gp->members[i].machine, v + o + 1, v[o]);
        gp->members[i].machine[v[o]] = '\0';
        o += 1u + v[o];
        gp->members[i].seq = tm_get64(v + o);
        o += 8;
    }
    gp->nmembers = n;
    return o == len ? 0 : TM_ECORRUPT;
}

/* A member's point, read from the index. */
static int pts__member_point(pts_t *p, const char *machine, uint64_t seq, uint32_t *mid, pts_point_t *pt)
{
    pthread_mutex_lock(&p->mu);
    uint32_t id = pts__name_find(p, machine);
    pthread_mutex_unlock(&p->mu);
    if (!id)
        return TM_ENOTFOUND;
    *mid = id;
    uint8_t k[PTS_POINT_KEY_LEN], v[PTS_POINT_VAL_MAX];
    size_t n;
    pts_key_point(k, id, seq);
    int rc = pts_index_get(p->ix, k, sizeof k, v, sizeof v, &n);
    if (rc == 0)
        rc = pts_val_point_parse(v, n, seq, pt);
    return rc;
}

/* ---- group points ------------------------------------------------------------------ */

int pts_group_point_add(pts_t *p, const char *group, uint64_t round, pts_kind_t kind, uint64_t time_ns,
                        const pts_group_member_t *members, size_t n, char *why, size_t whylen)
{
    why[0] = '\0';
    size_t glen = strlen(group);
    if (glen == 0 || glen > PTS_MAX_GROUP_NAME || n == 0 || n > PTS_MAX_GROUP_MEMBERS ||
        (kind != PTS_KIND_CRASH && kind != PTS_KIND_APP)) {
        snprintf(why, whylen, "a group point needs a group name, 1 to %u members and a kind", PTS_MAX_GROUP_MEMBERS);
        return TM_EINVAL;
    }
    size_t vlen = 16;
    for (size_t i = 0; i < n; i++)
        vlen += 1 + strlen(members[i].machine) + 8;
    uint8_t *val = tm_calloc(1, vlen);
    if (!val)
        return -ENOMEM;
    val[0] = (uint8_t)kind;
    tm_put16(val + 2, (uint16_t)n);
    tm_put64(val + 8, time_ns);
    size_t o = 16;
    pthread_mutex_lock(&p->wmu);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pts_group_member_t *m = &members[i];
        uint32_t mid;
        pts_point_t pt;
        rc = pts__member_point(p, m->machine, m->seq, &mid, &pt);
        if (rc == 0 && pt.tag_id != round)
            rc = TM_ENOPOINT;
        if (rc) {
            snprintf(why, whylen, "machine %s has no point of round %" PRIu64 " at sequence %" PRIu64, m->machine,
                     round, m->seq);
            if (rc == TM_ENOTFOUND)
                snprintf(why, whylen, "machine %s is unknown", m->machine);
            else
                rc = TM_ENOPOINT;
            break;
        }
        pt.multivm = true;
        pt.kind = kind;
        uint8_t k[PTS_POINT_KEY_LEN], v[PTS_POINT_VAL_MAX];
        pts_key_point(k, mid, m->seq);
        pts_wb_put(p->wb, k, sizeof k, v, pts_val_point(v, &pt));
        pts_mrec_t *r = &p->priv[mid - 1];
        if (r->latest_seq == m->seq) {
            r->m.latest = pt;
            pts__touch(p, r);
        }
        size_t nl = strlen(m->machine);
        val[o] = (uint8_t)nl;
        memcpy(val + o + 1, m->machine, nl);
        tm_put64(val + o + 1 + nl, m->seq);
        o += 1 + nl + 8;
    }
    if (rc == 0) {
        uint8_t k[PTS_GKEY_MAX];
        pts_wb_put(p->wb, k, pts__gkey(k, group, true, round), val, vlen);
        rc = pts__commit(p);
        if (rc == 0)
            rc = pts_index_flush(p->ix);
    } else {
        pts_wb_clear(p->wb); /* nothing of it: the cycle's batch was empty before (wmu) */
    }
    pthread_mutex_unlock(&p->wmu);
    tm_free(val);
    return rc;
}

void pts_group_points_free(pts_group_point_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tm_free(v[i].members);
    tm_free(v);
}

/* Whether every member still has its multi-VM point. */
bool pts__whole(pts_t *p, const pts_group_point_t *gp)
{
    for (size_t i = 0; i < gp->nmembers; i++) {
        uint32_t mid;
        pts_point_t pt;
        if (pts__member_point(p, gp->members[i].machine, gp->members[i].seq, &mid, &pt) != 0 || !pt.multivm ||
            pt.tag_id != gp->round)
            return false;
    }
    return true;
}

int pts__group_walk(pts_t *p, const char *group, pts__group_visit_fn fn, void *arg)
{
    uint8_t lo[PTS_GKEY_MAX], hi[PTS_GKEY_MAX];
    size_t ll = pts__gkey(lo, group, false, 0);
    memcpy(hi, lo, ll);
    hi[ll] = 0xff; /* after every round (a round key is 8 more bytes) */
    pts_iter_t *it = pts_iter_new(p->ix, lo, ll, hi, ll + 1);
    if (!it)
        return -ENOMEM;
    int rc = 0;
    for (pts_iter_last(it); pts_iter_valid(it); pts_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *val = pts_iter_value(it, &vl);
        pts_group_point_t gp;
        if (kl != ll + 8) {
            rc = TM_ECORRUPT;
            break;
        }
        if ((rc = pts__gval_parse(val, vl, &gp)) != 0)
            break;
        gp.round = tm_get_be64(k + ll);
        int r = fn(p, &gp, arg); /* takes gp.members */
        if (r < 0)
            rc = r;
        if (r != 0)
            break;
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    return rc;
}

typedef struct pts__gcollect {
    size_t limit;
    pts_group_point_t *v;
    size_t n, cap;
} pts__gcollect_t;

static int pts__gcollect(pts_t *p, pts_group_point_t *gp, void *arg)
{
    pts__gcollect_t *c = arg;
    if (c->n == c->cap && tm_grow((void **)&c->v, &c->cap, c->n + 1, sizeof *c->v) != 0) {
        tm_free(gp->members);
        return -ENOMEM;
    }
    gp->whole = pts__whole(p, gp);
    c->v[c->n++] = *gp;
    return c->limit && c->n == c->limit ? 1 : 0;
}

int pts_group_points(pts_t *p, const char *group, size_t limit, pts_group_point_t **out, size_t *n)
{
    pts__gcollect_t c = {.limit = limit};
    int rc = pts__group_walk(p, group, pts__gcollect, &c);
    if (rc) {
        pts_group_points_free(c.v, c.n);
        return rc;
    }
    *out = c.v;
    *n = c.n;
    return 0;
}

int pts__groups_retain(pts_t *p)
{
    uint8_t lo[1] = {PTS_K_GROUP}, hi[1] = {PTS_K_GROUP + 1};
    pts_iter_t *it = pts_iter_new(p->ix, lo, 1, hi, 1);
    if (!it)
        return -ENOMEM;
    int rc = 0;
    size_t dropped = 0;
    for (pts_iter_first(it); pts_iter_valid(it); pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *val = pts_iter_value(it, &vl);
        pts_group_point_t gp;
        if (kl < 10 || kl != 10u + k[1] || (rc = pts__gval_parse(val, vl, &gp)) != 0) {
            rc = rc ? rc : TM_ECORRUPT;
            break;
        }
        gp.round = tm_get_be64(k + kl - 8);
        if (!pts__whole(p, &gp)) {
            pts_wb_delete(p->wb, k, kl);
            dropped++;
        }
        tm_free(gp.members);
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    if (rc == 0 && dropped) {
        rc = pts__commit(p);
        tm_log(TM_LOG_INFO, "points: %zu group point%s forgotten (a member's point is gone)", dropped,
               dropped == 1 ? "" : "s");
    }
    return rc;
}
