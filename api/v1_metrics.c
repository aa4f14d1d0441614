/*
 * GET /metrics: Prometheus text format 0.0.4. Names are tidemark_*; the
 * list is in api/README.md.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/v1.h"
#include "base/clock.h"
#include "base/mem.h"

typedef struct api_text {
    char *p;
    size_t len, cap;
    bool oom;
} api_text_t;

static void api__printf(api_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void api__printf(api_text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *np = tm_realloc(t->p, cap);
        if (!np) {
            t->oom = true;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

static void api__metric(api_text_t *t, const char *name, const char *type, const char *help)
{
    api__printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Replication groups: rounds by outcome and how fresh their group points are. */
static void api__groups(api_text_t *t, cns_t *cns)
{
    size_t n = cns ? cns_group_count(cns) : 0;
    cns_group_stats_t *st = n ? tm_calloc(n, sizeof *st) : NULL;
    if (!st) {
        t->oom = n != 0;
        return;
    }
    n = cns_stats(cns, st, n);
    api__metric(t, "tidemark_group_members", "gauge", "Per replication group: its machines.");
    for (size_t i = 0; i < n; i++)
        api__printf(t, "tidemark_group_members{group=\"%s\"} %zu\n", st[i].name, st[i].members);
    api__metric(t, "tidemark_group_rounds_total", "counter",
                "Per replication group, rounds since start by outcome: committed (every member held in time), "
                "recorded (made a group point), aborted, unrecorded (committed, no group point).");
    for (size_t i = 0; i < n; i++) {
        static const char *const outcome[] = {"committed", "recorded", "aborted", "unrecorded"};
        const uint64_t v[] = {st[i].committed, st[i].recorded, st[i].aborted, st[i].unrecorded};
        for (size_t k = 0; k < 4; k++)
            api__printf(t, "tidemark_group_rounds_total{group=\"%s\",outcome=\"%s\"} %" PRIu64 "\n", st[i].name,
                        outcome[k], v[k]);
    }
    api__metric(t, "tidemark_group_prepare_seconds", "gauge",
                "Per replication group: the newest committed round's prepare, from asking to every member held.");
    for (size_t i = 0; i < n; i++)
        if (st[i].last_prepare_s >= 0)
            api__printf(t, "tidemark_group_prepare_seconds{group=\"%s\"} %.6f\n", st[i].name, st[i].last_prepare_s);
    api__metric(t, "tidemark_group_round_seconds", "gauge",
                "Per replication group: the newest recorded round, from its start to its group point.");
    for (size_t i = 0; i < n; i++)
        if (st[i].last_round_s >= 0)
            api__printf(t, "tidemark_group_round_seconds{group=\"%s\"} %.6f\n", st[i].name, st[i].last_round_s);
    api__metric(t, "tidemark_group_point_age_seconds", "gauge",
                "Per replication group: the age of its newest group point made since start (its cut's time).");
    for (size_t i = 0; i < n; i++)
        if (st[i].last_point_age_s >= 0)
            api__printf(t, "tidemark_group_point_age_seconds{group=\"%s\"} %.3f\n", st[i].name,
                        st[i].last_point_age_s);
    tm_free(st);
}

void api_v1_metrics(tm_http_req_t *req, void *ctx)
{
    api_v1_t *a = ctx;
    api_text_t t = {0};
    jnl_stats_t js;
    jnl_get_stats(a->jnl, &js);
    pts_stats_t ps;
    pts_get_stats(a->pts, &ps);

    api__metric(&t, "tidemark_journal_bytes_written_total", "counter", "Bytes written to the journal since start.");
    api__printf(&t, "tidemark_journal_bytes_written_total %" PRIu64 "\n", js.bytes_written);
    api__metric(&t, "tidemark_journal_fsyncs_total", "counter", "Journal batches made durable (one fdatasync each).");
    api__printf(&t, "tidemark_journal_fsyncs_total %" PRIu64 "\n", js.batches);
    api__metric(&t, "tidemark_journal_records_total", "counter", "Journal records made durable since start.");
    api__printf(&t, "tidemark_journal_records_total %" PRIu64 "\n", js.appends);
    api__metric(&t, "tidemark_journal_disk_bytes", "gauge", "Space the journal's files take.");
    api__printf(&t, "tidemark_journal_disk_bytes %" PRIu64 "\n", js.disk_bytes);
    api__metric(&t, "tidemark_processing_lag_records", "gauge", "Durable journal records not yet processed.");
    api__printf(&t, "tidemark_processing_lag_records %" PRIu64 "\n", ps.lag_records);
    api__metric(&t, "tidemark_processing_lag_bytes", "gauge", "Bytes of durable journal records not yet processed.");
    api__printf(&t, "tidemark_processing_lag_bytes %" PRIu64 "\n", ps.lag_bytes);
    api__metric(&t, "tidemark_processing_lag_seconds", "gauge", "How far processing is behind the journal.");
    api__printf(&t, "tidemark_processing_lag_seconds %.3f\n", (double)ps.lag_ns / 1e9);
    api__metric(&t, "tidemark_processed_extents_total", "counter", "Writes, zeroes and trims indexed since start.");
    api__printf(&t, "tidemark_processed_extents_total %" PRIu64 "\n", ps.extents);
    api__metric(&t, "tidemark_processed_bytes_total", "counter", "Disk bytes of the extents indexed since start.");
    api__printf(&t, "tidemark_processed_bytes_total %" PRIu64 "\n", ps.bytes);
    api__metric(&t, "tidemark_points_total", "counter", "Recovery points cut since start.");
    api__printf(&t, "tidemark_points_total %" PRIu64 "\n", ps.points);
    api__metric(&t, "tidemark_processing_failed", "gauge", "1 when processing stopped on an error (see the log).");
    api__printf(&t, "tidemark_processing_failed %d\n", ps.error ? 1 : 0);
    api__metric(&t, "tidemark_processing_paused", "gauge", "1 while processing waits for free space for the index.");
    api__printf(&t, "tidemark_processing_paused %d\n", ps.paused ? 1 : 0);

    pts_machine_t *ms;
    size_t n = 0;
    if (pts_machines(a->pts, &ms, &n) != 0)
        ms = NULL, n = 0;
    uint64_t now = tm_now_ns();
    api__metric(&t, "tidemark_machine_rpo_seconds", "gauge",
                "Per machine: 0 when its newest point holds every write received, else that point's age.");
    for (size_t i = 0; i < n; i++) {
        if (!ms[i].has_point)
            continue;
        ingest_machine_info_t mi;
        uint64_t received = ms[i].seq;
        if (ingest_machine_state(a->ingest, ms[i].name, &mi) == 0 && mi.durable_seq > received)
            received = mi.durable_seq;
        api__printf(&t, "tidemark_machine_rpo_seconds{machine=\"%s\"} %.3f\n", ms[i].name,
                    api_rpo_seconds(&ms[i], received, now));
    }
    api__metric(&t, "tidemark_machine_processed_seq", "gauge", "Per machine: the last stream sequence processed.");
    for (size_t i = 0; i < n; i++)
        api__printf(&t, "tidemark_machine_processed_seq{machine=\"%s\"} %" PRIu64 "\n", ms[i].name, ms[i].seq);
    tm_free(ms);

    api__groups(&t, a->cns);

    uint64_t running, ok, failed;
    api_jobs_counts(a->jobs, &running, &ok, &failed);
    api__metric(&t, "tidemark_jobs", "gauge", "Jobs by state (kept in memory since start).");
    api__printf(&t, "tidemark_jobs{state=\"running\"} %" PRIu64 "\n", running);
    api__printf(&t, "tidemark_jobs{state=\"succeeded\"} %" PRIu64 "\n", ok);
    api__printf(&t, "tidemark_jobs{state=\"failed\"} %" PRIu64 "\n", failed);
    if (a->http) {
        tm_http_stats_t hs;
        tm_http_server_get_stats(a->http, &hs);
        api__metric(&t, "tidemark_api_requests_total", "counter", "API requests answered, by status class.");
        api__printf(&t, "tidemark_api_requests_total{class=\"2xx\"} %" PRIu64 "\n", hs.status_2xx);
        api__printf(&t, "tidemark_api_requests_total{class=\"4xx\"} %" PRIu64 "\n", hs.status_4xx);
        api__printf(&t, "tidemark_api_requests_total{class=\"5xx\"} %" PRIu64 "\n", hs.status_5xx);
    }
    if (t.oom) {
        tm_free(t.p);
        tm_http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    tm_http_reply_text(req, 200, TM_HTTP_PROMETHEUS_TEXT, t.p, t.len);
    tm_free(t.p);
}
