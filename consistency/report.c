/* The groups and their rounds as the API and /metrics show them
 * (consistency.h; docs/api.md, "Replication groups"). On the loop. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "consistency/cns_int.h"

static json_t *cns_round_json(const cns_round_t *r)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, r->id);
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", id, "kind", r->app ? "app" : "crash", "state",
                          cns_rstate_names[r->state]);
    json_object_set_new(o, "reason", r->reason[0] ? json_string(r->reason) : json_null());
    json_object_set_new(o, "prepare_ms", r->committed_ns ? json_real((double)(r->committed_ns - r->started_ns) / 1e6)
                                                         : json_null());
    json_object_set_new(o, "round_ms", r->ended_ns && r->state != R_COMMITTED
                                           ? json_real((double)(r->ended_ns - r->started_ns) / 1e6)
                                           : json_null());
    json_t *ms = json_array();
    for (size_t i = 0; r->m && r->seq && i < r->m->n; i++)
        json_array_append_new(ms, json_pack("{s:s,s:o}", "machine", r->m->names[i], "seq",
                                            r->seq[i] ? json_integer((json_int_t)r->seq[i]) : json_null()));
    json_object_set_new(o, "members", ms);
    return o;
}

/* The definition part: what a client sends to make or change it. */
static json_t *cns_def_of(const cns_group_t *g)
{
    cns_group_cfg_t d = {.name = g->name, .members = (const char *const *)g->m->names, .nmembers = g->m->n,
                         .crash_every_ns = g->crash_every_ns, .app_every_ns = g->app_every_ns,
                         .hold_ms = g->hold_ms, .app_hold_ms = g->app_hold_ms};
    return cns_def_json(&d);
}

static json_t *cns_one_json(const cns_group_t *g)
{
    json_t *o = cns_def_of(g);
    json_object_set_new(o, "source", json_string(g->configured ? "configuration" : "api"));
    json_object_set_new(o, "rounds",
                        json_pack("{s:I,s:I,s:I,s:I}", "committed", (json_int_t)g->n_committed, "recorded",
                                  (json_int_t)g->n_recorded, "aborted", (json_int_t)g->n_aborted, "unrecorded",
                                  (json_int_t)g->n_unrecorded));
    json_t *hist = json_array();
    if (g->cur)
        json_array_append_new(hist, cns_round_json(g->cur));
    for (size_t i = 0; i < g->nhist; i++) {
        size_t at = (g->next + CNS_HISTORY - 1 - i) % CNS_HISTORY;
        json_array_append_new(hist, cns_round_json(&g->hist[at]));
    }
    json_object_set(o, "last_round", json_array_size(hist) ? json_array_get(hist, 0) : json_null());
    json_object_set_new(o, "history", hist);
    return o;
}

json_t *cns_groups_json(cns_t *c)
{
    json_t *a = json_array();
    for (size_t k = 0; c && k < c->ngroups; k++)
        json_array_append_new(a, cns_one_json(c->groups[k]));
    return a;
}

json_t *cns_group_json(cns_t *c, const char *group)
{
    const cns_group_t *g = cns__find(c, group);
    return g ? cns_one_json(g) : NULL;
}

json_t *cns_group_def_json(cns_t *c, const char *group, bool *configured)
{
    const cns_group_t *g = cns__find(c, group);
    if (!g)
        return NULL;
    if (configured)
        *configured = g->configured;
    return cns_def_of(g);
}

json_t *cns_stored_defs(cns_t *c)
{
    json_t *a = json_array();
    for (size_t k = 0; c && k < c->ngroups; k++)
        if (!c->groups[k]->configured)
            json_array_append_new(a, cns_def_of(c->groups[k]));
    return a;
}

size_t cns_group_count(cns_t *c)
{
    return c ? c->ngroups : 0;
}

size_t cns_stats(cns_t *c, cns_group_stats_t *out, size_t max)
{
    size_t n = 0;
    uint64_t now = tm_now_ns();
    for (size_t k = 0; c && k < c->ngroups && n < max; k++, n++) {
        const cns_group_t *g = c->groups[k];
        cns_group_stats_t *s = &out[n];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", g->name);
        s->members = g->m->n;
        s->committed = g->n_committed;
        s->recorded = g->n_recorded;
        s->aborted = g->n_aborted;
        s->unrecorded = g->n_unrecorded;
        s->last_prepare_s = s->last_round_s = s->last_point_age_s = -1;
        for (size_t i = 0; i < g->nhist; i++) { /* the newest round that got as far */
            const cns_round_t *r = &g->hist[(g->next + CNS_HISTORY - 1 - i) % CNS_HISTORY];
            if (s->last_prepare_s < 0 && r->committed_ns)
                s->last_prepare_s = (double)(r->committed_ns - r->started_ns) / 1e9;
            if (s->last_round_s < 0 && r->state == R_RECORDED)
                s->last_round_s = (double)(r->ended_ns - r->started_ns) / 1e9;
        }
        if (g->last_point_wall)
            s->last_point_age_s = (double)(now - g->last_point_wall) / 1e9;
    }
    return n;
}

size_t cns_round_times(cns_t *c, const char *group, uint64_t *ns, size_t max)
{
    const cns_group_t *g = cns__find(c, group);
    if (!g)
        return 0;
    size_t n = g->nround_ns < CNS_HISTORY ? g->nround_ns : CNS_HISTORY;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        ns[i] = g->round_ns[i];
    return n;
}
