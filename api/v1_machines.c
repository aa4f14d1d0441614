/*
 * GET /v1/health and GET /v1/machines: each machine registered or seen,
 * with ingest's view (state, agent connected, received sequence) and the
 * processor's (processed sequence, newest point, lag, RPO).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/v1.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "ingest/registry.h"

void api_v1_health(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    pts_stats_t st;
    pts_get_stats(a->pts, &st);
    if (st.paused) {
        tm_http_reply_json(req, 200,
                           json_pack("{s:s,s:s,s:[s],s:s?}", "status", "degraded", "version", a->version, "problems",
                                     "processing is paused: the file system of the index is nearly full (agents' "
                                     "writes are still kept in the journal); free space there",
                                     "nbd", a->nbd));
        return;
    }
    if (st.error) {
        /* still 200: the appliance answers and keeps what agents send, but
         * makes no points until it is restarted */
        char why[256];
        snprintf(why, sizeof why,
                 "processing stopped at journal record %llu: %s (acknowledged writes are kept in the journal; "
                 "see the log, then restart the appliance)",
                 (unsigned long long)st.next_lsn, tm_strerror(st.error));
        tm_http_reply_json(req, 200, json_pack("{s:s,s:s,s:[s],s:s?}", "status", "degraded", "version", a->version,
                                               "problems", why, "nbd", a->nbd));
        return;
    }
    tm_http_reply_json(req, 200, json_pack("{s:s,s:s,s:[],s:s?}", "status", "ok", "version", a->version, "problems",
                                           "nbd", a->nbd));
}

/* The names to list: registered, seen by ingest, or known to the index. */
static int api__add_name(char ***names, size_t *n, size_t *cap, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*names)[i], name) == 0)
            return 0;
    if (*n == *cap && tm_grow((void **)names, cap, *n + 1, sizeof **names) != 0)
        return -1;
    (*names)[*n] = tm_strdup(name);
    if (!(*names)[*n])
        return -1;
    (*n)++;
    return 0;
}

static int api__by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static json_t *api__machine_json(api_v1_t *a, const char *name, const pts_stats_t *st)
{
    pts_machine_t m;
    ingest_machine_info_t mi;
    bool have_m = pts_machine(a->pts, name, &m) == 0;
    bool have_i = ingest_machine_state(a->ingest, name, &mi) == 0;
    const char *state = "registered";
    if (have_i && mi.state != INGEST_MACHINE_NEW)
        state = ingest_machine_state_name(mi.state);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "connected", json_boolean(have_i && mi.connected));
    json_t *disks = json_array();
    for (unsigned d = 0; have_m && d < m.ndisks; d++)
        json_array_append_new(disks, json_pack("{s:s,s:I,s:b}", "name", m.disks[d].name, "size",
                                               (json_int_t)m.disks[d].size, "synced", m.disks[d].synced));
    json_object_set_new(o, "disks", disks);
    char group[PTS_MAX_GROUP_NAME + 1];
    json_object_set_new(o, "group", pts_machine_group(a->pts, name, group, sizeof group) == 0 ? json_string(group)
                                                                                             : json_null());
    if (have_m && m.failover != PTS_FO_NONE) {
        char t[40];
        api_time(m.failover_ns, t, sizeof t);
        json_t *fo = json_pack("{s:s,s:s}", "state", pts_fo_state_name(m.failover), "since", t);
        json_object_set_new(fo, "point", m.failover == PTS_FO_ACTIVE ? json_integer((json_int_t)m.failover_seq)
                                                                      : json_null());
        json_object_set_new(o, "failover", fo);
    } else {
        json_object_set_new(o, "failover", json_null());
    }
    uint64_t received = have_i ? mi.durable_seq : 0, processed = have_m ? m.seq : 0;
    if (received < processed)
        received = processed;
    json_object_set_new(o, "received_seq", json_integer((json_int_t)received));
    json_object_set_new(o, "processed_seq", json_integer((json_int_t)processed));
    /* The journal is shared: its lag is every machine's upper bound. */
    json_object_set_new(o, "lag_bytes", json_integer((json_int_t)(received > processed ? st->lag_bytes : 0)));
    json_object_set_new(o, "lag_seconds", json_real(received > processed ? (double)st->lag_ns / 1e9 : 0.0));
    if (have_m && m.has_point) {
        json_object_set_new(o, "rpo_seconds", json_real(api_rpo_seconds(&m, received, tm_now_ns())));
        json_object_set_new(o, "latest_point", api_point_json(&m.latest));
    } else {
        json_object_set_new(o, "rpo_seconds", json_null());
        json_object_set_new(o, "latest_point", json_null());
    }
    return o;
}

void api_v1_machines(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;
    ingest_registry_t reg = {0};
    char err[256];
    if (ingest_registry_load(a->data_dir, &reg, err, sizeof err) == 0)
        for (size_t i = 0; i < reg.n; i++)
            bad |= api__add_name(&names, &n, &cap, reg.v[i].name);
    ingest_registry_free(&reg);
    for (size_t i = 0; i < ingest_machine_count(a->ingest); i++) {
        ingest_machine_info_t mi;
        if (ingest_machine_at(a->ingest, i, &mi) == 0)
            bad |= api__add_name(&names, &n, &cap, mi.name);
    }
    pts_machine_t *pm;
    size_t np;
    if (pts_machines(a->pts, &pm, &np) == 0) {
        for (size_t i = 0; i < np; i++)
            bad |= api__add_name(&names, &n, &cap, pm[i].name);
        tm_free(pm);
    }
    if (bad) {
        for (size_t i = 0; i < n; i++)
            tm_free(names[i]);
        tm_free(names);
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    qsort(names, n, sizeof *names, api__by_name);
    pts_stats_t st;
    pts_get_stats(a->pts, &st);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, api__machine_json(a, names[i], &st));
        tm_free(names[i]);
    }
    tm_free(names);
    tm_http_reply_json(req, 200, json_pack("{s:o}", "machines", list));
}
