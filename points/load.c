/*
 * Opening an index: check its layout version and journal, and load the
 * position and the machine table that the processor goes on from.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "points/pts_int.h"

static int pts__load_header(pts_t *p, char *err, size_t errlen)
{
    uint8_t k = PTS_K_VERSION, v[16];
    size_t n;
    int rc = pts_index_get(p->ix, &k, 1, v, sizeof v, &n);
    if (rc == TM_ENOTFOUND)
        return 0;
    if (rc == 0 && n != 12)
        rc = TM_ECORRUPT;
    if (rc) {
        snprintf(err, errlen, "the index's header cannot be read: %s", tm_strerror(rc));
        return rc;
    }
    if (tm_get32(v) != PTS_LAYOUT_VERSION) {
        snprintf(err, errlen, "the index has layout version %u; this build reads version %u", tm_get32(v),
                 PTS_LAYOUT_VERSION);
        return TM_EVERSION;
    }
    p->have_version = true;
    p->journal_id = tm_get64(v + 4);
    jnl_stats_t st;
    jnl_get_stats(p->jnl, &st);
    if (st.journal_id != p->journal_id) {
        snprintf(err, errlen,
                 "the index was made from journal %016" PRIx64 " but the journal here is %016" PRIx64
                 " (an index and a journal from different data folders?)",
                 p->journal_id, st.journal_id);
        return TM_EFOREIGN;
    }
    k = PTS_K_POS;
    uint8_t pv[32];
    rc = pts_index_get(p->ix, &k, 1, pv, sizeof pv, &n);
    if (rc == 0 && n == 32) {
        p->next_lsn = tm_get64(pv);
        p->last_ns = tm_get64(pv + 8);
        p->next_pos.seg = tm_get64(pv + 16);
        p->next_pos.off = tm_get64(pv + 24);
    } else if (rc != TM_ENOTFOUND) {
        snprintf(err, errlen, "the index's position cannot be read: %s", tm_strerror(rc ? rc : TM_ECORRUPT));
        return rc ? rc : TM_ECORRUPT;
    }
    k = PTS_K_NEXT_ID;
    rc = pts_index_get(p->ix, &k, 1, v, sizeof v, &n);
    if (rc == 0 && n == 4)
        p->next_id = tm_get32(v);
    else if (rc != TM_ENOTFOUND) {
        snprintf(err, errlen, "the index's machine count cannot be read");
        return rc ? rc : TM_ECORRUPT;
    }
    return 0;
}

static int pts__load_point(pts_t *p, pts_mrec_t *r)
{
    uint8_t k[PTS_POINT_KEY_LEN], v[PTS_POINT_VAL_MAX];
    size_t n;
    pts_key_point(k, r->m.id, r->latest_seq);
    int rc = pts_index_get(p->ix, k, sizeof k, v, sizeof v, &n);
    if (rc == 0)
        rc = pts_val_point_parse(v, n, r->latest_seq, &r->m.latest);
    if (rc == 0)
        r->m.has_point = true;
    return rc;
}

int pts__load(pts_t *p, char *err, size_t errlen)
{
    int rc = pts__load_header(p, err, errlen);
    if (rc)
        return rc;
    uint8_t lo[1] = {PTS_K_MACHINE}, hi[1] = {PTS_K_MACHINE + 1};
    pts_iter_t *it = pts_iter_new(p->ix, lo, 1, hi, 1);
    if (!it)
        return -ENOMEM;
    for (pts_iter_first(it); pts_iter_valid(it); pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *key = pts_iter_key(it, &kl);
        const uint8_t *val = pts_iter_value(it, &vl);
        pts_mrec_t r;
        if (kl != PTS_MACHINE_KEY_LEN || pts_val_machine_parse(val, vl, &r) != 0) {
            rc = TM_ECORRUPT;
            snprintf(err, errlen, "a machine record of the index does not parse");
            break;
        }
        r.m.id = tm_get_be32(key + 1);
        r.m.consistent = pts__consistent(&r);
        r.m.unsafe_since = r.unsafe_since;
        /* ids are given densely from 1, in key order */
        if (r.m.id != p->nmach + 1 || r.m.id >= p->next_id) {
            rc = TM_ECORRUPT;
            snprintf(err, errlen, "the index's machine ids are not consecutive at %u", r.m.id);
            break;
        }
        if (r.latest_seq && (rc = pts__load_point(p, &r)) != 0) {
            snprintf(err, errlen, "machine %s's latest point %" PRIu64 " cannot be read: %s", r.m.name,
                     r.latest_seq, tm_strerror(rc));
            break;
        }
        if (p->nmach == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            pts_mrec_t *priv = tm_realloc(p->priv, cap * sizeof *priv);
            bool *dirty = priv ? tm_realloc(p->dirty, cap * sizeof *dirty) : NULL;
            if (priv)
                p->priv = priv;
            if (dirty)
                p->dirty = dirty;
            if (!priv || !dirty) {
                rc = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                break;
            }
            p->cap = cap;
        }
        p->priv[p->nmach] = r;
        p->dirty[p->nmach] = false;
        p->nmach++;
        rc = pts__name_add(p, r.m.id, r.m.name);
        if (rc) {
            snprintf(err, errlen, "out of memory");
            break;
        }
    }
    if (rc == 0 && (rc = pts_iter_status(it)) != 0)
        snprintf(err, errlen, "the index cannot be read");
    pts_iter_free(it);
    if (rc)
        return rc;
    if (p->nmach) {
        p->pub = tm_malloc(p->cap * sizeof *p->pub);
        if (!p->pub) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(p->pub, p->priv, p->nmach * sizeof *p->pub);
        p->npub = p->nmach;
    }
    return pts__load_failovers(p, err, errlen);
}
