/*
 * Reading the point catalog: point lists and selectors. Selectors are the
 * contract of architecture.md ("Point selectors"); see points.h.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "points/pts_int.h"

/* How long a selector may wait for the processor to catch up. */
#define PTS_RESOLVE_WAIT_MS 30000

static int pts__mid(pts_t *p, const char *machine, pts_machine_t *m)
{
    return pts_machine(p, machine, m);
}

int pts_points(pts_t *p, const char *machine, const pts_query_t *q, pts_point_t **out, size_t *n)
{
    pts_machine_t m;
    int rc = pts__mid(p, machine, &m);
    if (rc)
        return rc;
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, PTS_K_POINT, m.id);
    pts_key_prefix(hi, PTS_K_POINT, m.id + 1);
    pts_iter_t *it = pts_iter_new(pts_index(p), lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    pts_point_t *v = NULL;
    size_t cnt = 0, cap = 0;
    for (pts_iter_last(it); pts_iter_valid(it); pts_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *val = pts_iter_value(it, &vl);
        uint32_t mid;
        uint64_t seq;
        pts_point_t pt;
        if (pts_key_point_parse(k, kl, &mid, &seq) != 0 || pts_val_point_parse(val, vl, seq, &pt) != 0) {
            rc = TM_ECORRUPT;
            break;
        }
        if (q && q->until_ns && pt.time_ns > q->until_ns)
            continue;
        if (q && q->since_ns && pt.time_ns < q->since_ns)
            break; /* newest first: everything further is older */
        if (q && q->kinds && !(q->kinds & (1u << pt.kind)))
            continue;
        if (cnt == cap) {
            rc = tm_grow((void **)&v, &cap, cnt + 1, sizeof *v);
            if (rc)
                break;
        }
        v[cnt++] = pt;
        if (q && q->limit && cnt == q->limit)
            break;
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    if (rc) {
        tm_free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int pts_points_after(pts_t *p, const char *machine, uint64_t seq, size_t limit, pts_point_t **out, size_t *n)
{
    pts_machine_t m;
    int rc = pts__mid(p, machine, &m);
    if (rc)
        return rc;
    uint8_t lo[PTS_POINT_KEY_LEN], hi[5];
    pts_key_point(lo, m.id, seq + 1);
    pts_key_prefix(hi, PTS_K_POINT, m.id + 1);
    pts_iter_t *it = pts_iter_new(pts_index(p), lo, sizeof lo, hi, sizeof hi);
    pts_point_t *v = tm_calloc(limit ? limit : 1, sizeof *v);
    if (!it || !v) {
        pts_iter_free(it);
        tm_free(v);
        return -ENOMEM;
    }
    size_t cnt = 0;
    for (pts_iter_first(it); pts_iter_valid(it) && cnt < limit; pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *val = pts_iter_value(it, &vl);
        uint32_t mid;
        uint64_t s;
        if (pts_key_point_parse(k, kl, &mid, &s) != 0 || pts_val_point_parse(val, vl, s, &v[cnt]) != 0) {
            rc = TM_ECORRUPT;
            break;
        }
        cnt++;
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    if (rc) {
        tm_free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

static int pts__point_at(pts_t *p, uint32_t mid, uint64_t seq, pts_point_t *pt)
{
    uint8_t k[PTS_POINT_KEY_LEN], v[PTS_POINT_VAL_MAX];
    size_t n;
    pts_key_point(k, mid, seq);
    int rc = pts_index_get(pts_index(p), k, sizeof k, v, sizeof v, &n);
    if (rc == 0)
        rc = pts_val_point_parse(v, n, seq, pt);
    return rc;
}

static int pts__latest_app(pts_t *p, const char *machine, pts_point_t *out, char *why, size_t wl)
{
    pts_query_t q = {.kinds = 1u << PTS_KIND_APP, .limit = 1};
    pts_point_t *v;
    size_t n;
    int rc = pts_points(p, machine, &q, &v, &n);
    if (rc)
        return rc;
    if (n == 0) {
        tm_free(v);
        snprintf(why, wl, "machine %s has no app-consistent point yet", machine);
        return TM_ENOPOINT;
    }
    *out = v[0];
    tm_free(v);
    return 0;
}

/* The newest group point a member of group may fail over to: of the
 * right kind, holding every member the group has now (after a change of
 * members every member then lands on the same round; one made before a
 * member left still covers the rest), and whole. The walk stops at the
 * first: group points are newest first and few at the head are partial. */
typedef struct pts__multivm_find {
    const pts_machine_t *m;
    const char *group;
    bool app;
    pts_point_t *out;
    int rc;
} pts__multivm_find_t;

static int pts__multivm_visit(pts_t *p, pts_group_point_t *gp, void *arg)
{
    pts__multivm_find_t *f = arg;
    int stop = 0;
    if ((!f->app || gp->kind == PTS_KIND_APP) && pts__group_covers(p, f->group, gp) && pts__whole(p, gp)) {
        for (size_t k = 0; k < gp->nmembers; k++) {
            if (strcmp(gp->members[k].machine, f->m->name) == 0) {
                f->rc = pts__point_at(p, f->m->id, gp->members[k].seq, f->out);
                if (f->rc == TM_ENOTFOUND)
                    f->rc = TM_ENOPOINT;
                stop = f->rc == TM_ENOPOINT ? 0 : 1;
                break;
            }
        }
    }
    tm_free(gp->members);
    return stop;
}

/*
 * latest-multivm-processed / latest-multivm-app (architecture.md): a
 * member of a group gets its point of the newest whole group point (app:
 * the newest app-consistent one); a machine in no group its latest
 * processed (latest app-consistent) point.
 */
static int pts__latest_multivm(pts_t *p, const pts_machine_t *m, bool app, pts_point_t *out, char *why, size_t wl)
{
    char group[PTS_MAX_GROUP_NAME + 1];
    if (pts_machine_group(p, m->name, group, sizeof group) != 0) {
        if (app)
            return pts__latest_app(p, m->name, out, why, wl);
        if (!m->has_point) {
            snprintf(why, wl, "machine %s has no processed point yet", m->name);
            return TM_ENOPOINT;
        }
        *out = m->latest;
        return 0;
    }
    pts__multivm_find_t f = {.m = m, .group = group, .app = app, .out = out, .rc = TM_ENOPOINT};
    int rc = pts__group_walk(p, group, pts__multivm_visit, &f);
    if (rc == 0)
        rc = f.rc;
    if (rc == TM_ENOPOINT)
        snprintf(why, wl, "group %s (of machine %s) has no %sgroup point yet", group, m->name,
                 app ? "app-consistent " : "");
    return rc;
}

/* The window of inconsistency holding seq, if any: [*b, *e). */
static int pts__window_at(pts_t *p, uint32_t mid, uint64_t seq, uint64_t *b, uint64_t *e)
{
    uint8_t lo[5], hi[5], at[PTS_POINT_KEY_LEN];
    pts_key_prefix(lo, PTS_K_UNSAFE, mid);
    pts_key_prefix(hi, PTS_K_UNSAFE, mid + 1);
    pts_key_unsafe(at, mid, seq);
    pts_iter_t *it = pts_iter_new(pts_index(p), lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    *b = *e = 0;
    pts_iter_seek_for_prev(it, at, sizeof at);
    int rc = 0;
    if (pts_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        if (kl != PTS_POINT_KEY_LEN || vl != 8) {
            rc = TM_ECORRUPT;
        } else {
            *b = tm_get_be64(k + 5);
            *e = tm_get64(v);
        }
    } else {
        rc = pts_iter_status(it);
    }
    pts_iter_free(it);
    return rc;
}

/* Move *seq (found by the time iterator `it`, at its batch) back out of
 * any window of inconsistency, and *ns to the time of the batch holding
 * the new position. 0, or TM_ENOPOINT when no consistent position is left. */
static int pts__consistent_at(pts_t *p, const pts_machine_t *m, pts_iter_t *it, uint64_t *seq, uint64_t *ns)
{
    uint64_t s = *seq;
    if (m->unsafe_since && s >= m->unsafe_since)
        s = m->unsafe_since - 1;
    uint64_t b, e;
    int rc = pts__window_at(p, m->id, s, &b, &e);
    if (rc)
        return rc;
    if (b && s >= b && s < e)
        s = b - 1;
    if (s == 0)
        return TM_ENOPOINT;
    if (s == *seq)
        return 0;
    /* back through the batches to the one holding s */
    for (; pts_iter_valid(it); pts_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t mid;
        pts_tbatch_t tb;
        if (pts_time_parse(k, kl, v, vl, &mid, &tb) != 0)
            return TM_ECORRUPT;
        if (tb.first_seq <= s) {
            *seq = s;
            *ns = tb.recv_ns;
            return 0;
        }
    }
    return TM_ENOPOINT; /* its batch was folded: before the horizon */
}

/* @TIME: the last batch received at or before t. */
static int pts__at_time(pts_t *p, const char *machine, uint64_t t, pts_point_t *out, char *why, size_t wl)
{
    pts_machine_t m;
    int rc = pts_machine(p, machine, &m);
    if (rc)
        return rc;
    if (t > tm_now_ns()) {
        snprintf(why, wl, "that instant is in the future");
        return TM_ENOPOINT;
    }
    /* Writes received by t but not processed yet would be missed. */
    if (t >= m.seq_ns) {
        rc = pts_sync(p, PTS_RESOLVE_WAIT_MS);
        if (rc)
            return rc;
    }
    uint8_t lo[5], hi[5], at[PTS_TIME_KEY_LEN];
    pts_key_prefix(lo, PTS_K_TIME, m.id);
    pts_key_prefix(hi, PTS_K_TIME, m.id + 1);
    pts_key_time(at, m.id, t, UINT64_MAX);
    pts_iter_t *it = pts_iter_new(pts_index(p), lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    pts_iter_seek_for_prev(it, at, sizeof at);
    rc = TM_ENOPOINT;
    if (pts_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = pts_iter_key(it, &kl);
        uint32_t mid;
        uint64_t ns, seq;
        if (pts_key_time_parse(k, kl, &mid, &ns, &seq) != 0) {
            rc = TM_ECORRUPT;
        } else if ((rc = pts__consistent_at(p, &m, it, &seq, &ns)) != 0) {
            snprintf(why, wl, "machine %s has no crash-consistent position at or before that instant (its initial "
                              "copy or a resync was under way)", machine);
        } else if (seq < m.first_seq) {
            snprintf(why, wl, "that instant is past machine %s's retention horizon", machine);
            rc = TM_ENOPOINT;
        } else {
            memset(out, 0, sizeof *out);
            out->seq = seq;
            out->time_ns = ns;
            out->kind = PTS_KIND_CUSTOM;
            rc = 0;
        }
    } else if ((rc = pts_iter_status(it)) == 0) {
        snprintf(why, wl, "machine %s has no write kept from that instant or before (before its first write, "
                          "or past the retention horizon)", machine);
        rc = TM_ENOPOINT;
    }
    pts_iter_free(it);
    return rc;
}

int pts_resolve(pts_t *p, const char *machine, const char *sel, pts_point_t *out, char *why, size_t wl)
{
    pts_machine_t m;
    snprintf(why, wl, "%s", "");
    if (strcmp(sel, "latest") == 0) {
        int rc = pts_cut_latest(p, machine, PTS_RESOLVE_WAIT_MS, out);
        if (rc == TM_ENOPOINT || rc == TM_ENOTFOUND)
            snprintf(why, wl, "machine %s has not sent any data yet", machine);
        return rc;
    }
    int rc = pts_machine(p, machine, &m);
    if (rc) {
        snprintf(why, wl, "no machine named '%s' has sent data to this appliance", machine);
        return rc;
    }
    if (strcmp(sel, "latest-processed") == 0) {
        if (!m.has_point) {
            snprintf(why, wl, "machine %s has no processed point yet", machine);
            return TM_ENOPOINT;
        }
        *out = m.latest;
        return 0;
    }
    if (strcmp(sel, "latest-app") == 0)
        return pts__latest_app(p, machine, out, why, wl);
    if (strcmp(sel, "latest-multivm-processed") == 0 || strcmp(sel, "latest-multivm-app") == 0)
        return pts__latest_multivm(p, &m, strcmp(sel, "latest-multivm-app") == 0, out, why, wl);
    if (sel[0] == '@') {
        uint64_t t;
        if (pts_parse_time(sel + 1, &t) != 0) {
            snprintf(why, wl, "'%s' is not an RFC 3339 time (e.g. @2026-11-27T10:00:00Z)", sel + 1);
            return TM_EINVAL;
        }
        return pts__at_time(p, machine, t, out, why, wl);
    }
    if (isdigit((unsigned char)sel[0])) {
        char *end;
        errno = 0;
        unsigned long long seq = strtoull(sel, &end, 10);
        if (*end || errno || seq == 0 || strlen(sel) > 20) {
            snprintf(why, wl, "'%s' is not a point id (a positive decimal number)", sel);
            return TM_EINVAL;
        }
        rc = pts__point_at(p, m.id, seq, out);
        if (rc == TM_ENOTFOUND) {
            snprintf(why, wl, "machine %s has no point %llu (never cut, or past the retention horizon)", machine,
                     seq);
            return TM_ENOPOINT;
        }
        return rc;
    }
    snprintf(why, wl,
             "'%s' is not a point selector: use latest, latest-processed, latest-app, latest-multivm-processed, "
             "latest-multivm-app, a point id or @TIME",
             sel);
    return TM_EINVAL;
}
