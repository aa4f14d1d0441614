/*
 * Replication groups come and go (consistency.h): made at start from the
 * configuration and the groups file, made, changed and deleted through
 * the API while rounds run. A change aborts the round in flight; a
 * deleted group lives on, detached, until ingest has called back every
 * prepare and its recordings are done.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "consistency/cns_int.h"

/* ---- member lists ---------------------------------------------------------------- */

cns_members_t *cns_members_new(const char *const *names, size_t n)
{
    cns_members_t *m = tm_calloc(1, sizeof *m + n * sizeof m->names[0]);
    if (!m)
        return NULL;
    m->refs = 1;
    for (; m->n < n; m->n++) {
        if (!(m->names[m->n] = tm_strdup(names[m->n]))) {
            cns_members_unref(m);
            return NULL;
        }
    }
    return m;
}

cns_members_t *cns_members_ref(cns_members_t *m)
{
    m->refs++;
    return m;
}

void cns_members_unref(cns_members_t *m)
{
    if (!m || --m->refs)
        return;
    for (size_t i = 0; i < m->n; i++)
        tm_free(m->names[i]);
    tm_free(m);
}

/* ---- groups ------------------------------------------------------------------------ */

cns_group_t *cns__find(cns_t *c, const char *name)
{
    for (size_t i = 0; c && i < c->ngroups; i++)
        if (strcmp(c->groups[i]->name, name) == 0)
            return c->groups[i];
    return NULL;
}

bool cns_has_group(cns_t *c, const char *name)
{
    return cns__find(c, name) != NULL;
}

void cns__group_unref(cns_group_t *g)
{
    if (--g->refs)
        return;
    for (size_t i = 0; i < g->nhist; i++)
        cns__round_free(&g->hist[i]);
    if (g->cur) {
        cns__round_free(g->cur);
        tm_free(g->cur);
    }
    cns_members_unref(g->m);
    tm_free(g->name);
    tm_free(g);
}

static void on_timer_closed(uv_handle_t *h)
{
    cns_group_t *g = h->data;
    cns_t *c = g->c;
    c->open_handles--;
    cns__group_unref(g);
    cns__maybe_free(c);
}

/* Take g out of c's groups: its round in flight aborted with why, its
 * timers closed; freed once nothing refers to it. */
static void cns_detach(cns_group_t *g, const char *why)
{
    cns_t *c = g->c;
    if (g->cur)
        cns__abort(g, "%s", why);
    for (size_t i = 0; i < c->ngroups; i++) {
        if (c->groups[i] == g) {
            memmove(&c->groups[i], &c->groups[i + 1], (c->ngroups - i - 1) * sizeof c->groups[0]);
            c->ngroups--;
            break;
        }
    }
    g->attached = false;
    uv_close((uv_handle_t *)&g->crash_t, on_timer_closed);
    uv_close((uv_handle_t *)&g->app_t, on_timer_closed);
    uv_close((uv_handle_t *)&g->hold_t, on_timer_closed);
    cns__group_unref(g);
}

/* Tell the index which machine is in which group (for the selectors). */
static int cns_sync_pts(cns_t *c)
{
    pts_group_def_t *defs = tm_calloc(c->ngroups ? c->ngroups : 1, sizeof *defs);
    if (!defs)
        return -ENOMEM;
    for (size_t i = 0; i < c->ngroups; i++) {
        const cns_group_t *g = c->groups[i];
        defs[i] = (pts_group_def_t){g->name, (const char *const *)g->m->names, g->m->n};
    }
    int rc = pts_set_groups(c->pts, defs, c->ngroups);
    tm_free(defs);
    return rc;
}

/* The settings of def, defaults filled in, onto g. */
static void cns_settings(cns_group_t *g, const cns_group_cfg_t *def)
{
    g->crash_every_ns = def->crash_every_ns ? def->crash_every_ns : CNS_DEFAULT_CRASH_EVERY_NS;
    g->app_every_ns = def->app_every_ns ? def->app_every_ns : CNS_DEFAULT_APP_EVERY_NS;
    g->hold_ms = def->hold_ms ? def->hold_ms : CNS_DEFAULT_HOLD_MS;
    g->app_hold_ms = def->app_hold_ms ? def->app_hold_ms : CNS_DEFAULT_APP_HOLD_MS;
}

static int cns_check(cns_t *c, const cns_group_cfg_t *def, unsigned flags, char *err, size_t errlen)
{
    cns_group_t *same = cns__find(c, def->name);
    if (same && (flags & CNS_PUT_CREATE)) {
        snprintf(err, errlen, "there is a group named %s already", def->name);
        return -EEXIST;
    }
    if (!same && (flags & CNS_PUT_CHANGE)) {
        snprintf(err, errlen, "there is no replication group '%s' on this appliance", def->name);
        return TM_ENOTFOUND;
    }
    if (same && same->configured && !def->configured) {
        snprintf(err, errlen, "group %s is defined in the configuration file: change it there", def->name);
        return -EPERM;
    }
    if (def->nmembers == 0 || def->nmembers > PTS_MAX_GROUP_MEMBERS) {
        snprintf(err, errlen, "group %s: a group has 1 to %u members", def->name, PTS_MAX_GROUP_MEMBERS);
        return TM_EINVAL;
    }
    for (size_t i = 0; i < def->nmembers; i++) {
        for (size_t k = 0; k < i; k++) {
            if (strcmp(def->members[i], def->members[k]) == 0) {
                snprintf(err, errlen, "group %s: machine %s is named twice", def->name, def->members[i]);
                return TM_EINVAL;
            }
        }
        for (size_t k = 0; k < c->ngroups; k++) {
            const cns_group_t *o = c->groups[k];
            if (o == same)
                continue;
            for (size_t j = 0; j < o->m->n; j++) {
                if (strcmp(o->m->names[j], def->members[i]) == 0) {
                    snprintf(err, errlen, "machine %s is in group %s already: a machine is in one group at most",
                             def->members[i], o->name);
                    return -EBUSY;
                }
            }
        }
    }
    return 0;
}

int cns_group_put(cns_t *c, const cns_group_cfg_t *def, unsigned flags, char *err, size_t errlen)
{
    if (c->stopping) {
        snprintf(err, errlen, "the appliance is stopping");
        return -ESHUTDOWN;
    }
    int rc = cns_check(c, def, flags, err, errlen);
    if (rc || (flags & CNS_PUT_CHECK))
        return rc;
    cns_members_t *m = cns_members_new(def->members, def->nmembers);
    if (!m)
        goto out_nomem;
    cns_group_t *g = cns__find(c, def->name);
    if (g) {
        if (g->cur)
            cns__abort(g, "the group was changed");
        cns_members_unref(g->m);
        g->m = m;
        cns_settings(g, def);
        cns__schedule(g);
        if ((rc = cns_sync_pts(c)) != 0)
            goto out_sync;
        return 0;
    }
    if (c->ngroups == c->cap && tm_grow((void **)&c->groups, &c->cap, c->ngroups + 1, sizeof c->groups[0]) != 0)
        goto out_members;
    if (!(g = tm_calloc(1, sizeof *g)) || !(g->name = tm_strdup(def->name))) {
        tm_free(g);
        goto out_members;
    }
    g->c = c;
    g->m = m;
    g->configured = def->configured;
    g->attached = true;
    g->refs = 1 + 3; /* attached, three timers */
    cns_settings(g, def);
    uv_timer_init(c->loop, &g->crash_t);
    uv_timer_init(c->loop, &g->app_t);
    uv_timer_init(c->loop, &g->hold_t);
    g->crash_t.data = g->app_t.data = g->hold_t.data = g;
    c->open_handles += 3;
    c->groups[c->ngroups++] = g;
    cns__schedule(g);
    if ((rc = cns_sync_pts(c)) != 0)
        goto out_sync;
    return 0;

out_members:
    cns_members_unref(m);
out_nomem:
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
out_sync:
    snprintf(err, errlen, "the index could not learn the groups: %s", tm_strerror(rc));
    return rc;
}

int cns_group_delete(cns_t *c, const char *name, char *err, size_t errlen)
{
    cns_group_t *g = cns__find(c, name);
    if (!g) {
        snprintf(err, errlen, "there is no replication group '%s' on this appliance", name);
        return TM_ENOTFOUND;
    }
    if (g->configured) {
        snprintf(err, errlen, "group %s is defined in the configuration file: delete it there", name);
        return -EPERM;
    }
    cns_detach(g, "the group was deleted");
    int rc = cns_sync_pts(c);
    if (rc)
        snprintf(err, errlen, "the index could not learn the groups: %s", tm_strerror(rc));
    return rc;
}

/* ---- start and stop --------------------------------------------------------------------- */

int cns_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, const cns_group_cfg_t *groups, size_t n, cns_t **out,
              char *err, size_t errlen)
{
    cns_t *c = tm_calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->loop = loop;
    c->ig = ig;
    c->pts = pts;
    int rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++)
        rc = cns_group_put(c, &groups[k], CNS_PUT_CREATE, err, errlen);
    if (rc == 0)
        rc = cns_sync_pts(c); /* also when there are none: forget earlier ones */
    if (rc) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        cns_stop(c, NULL, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

/* Stopped once no handle, worker or prepare callback is left: the stop's
 * callback when the handles and workers are done; the memory when ingest
 * owes no callback any more (it calls them when its sessions end). By
 * then every group, detached at the stop, has gone with its last
 * reference. */
void cns__maybe_free(cns_t *c)
{
    if (!c->stopping || c->open_handles || c->workers)
        return;
    if (c->stopped) {
        void (*cb)(void *) = c->stopped;
        c->stopped = NULL;
        cb(c->stopped_arg);
    }
    if (c->outstanding == 0) {
        tm_free(c->groups);
        tm_free(c);
    }
}

void cns_stop(cns_t *c, void (*cb)(void *arg), void *arg)
{
    if (!c) {
        if (cb)
            cb(arg);
        return;
    }
    c->stopping = true;
    c->stopped = cb;
    c->stopped_arg = arg;
    while (c->ngroups)
        cns_detach(c->groups[c->ngroups - 1], "the appliance is stopping");
    cns__maybe_free(c);
}
