/* App-consistent tags on a schedule (serve_tags.h). */
#include "cli/serve_tags.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* Per machine: when a tag was last asked for (so that one whose agent
 * cannot make one is not asked at every tick). */
typedef struct cli_tag_asked {
    char name[WIRE_MAX_NAME + 1];
    uint64_t at_ns;
} cli_tag_asked_t;

struct cli_tags {
    uv_timer_t timer;
    ingest_t *ig;
    pts_t *pts;
    uint64_t every_ns;
    pts_retention_t *per; /* machines' own periods; names owned */
    size_t nper;
    cli_tag_asked_t *asked;
    size_t nasked, cap;
    uint64_t next_id;
};

static void cli__tags_free(cli_tags_t *t)
{
    for (size_t i = 0; i < t->nper; i++)
        tm_free((char *)t->per[i].machine);
    tm_free(t->per);
    tm_free(t->asked);
    tm_free(t);
}

static uint64_t *cli__asked(cli_tags_t *t, const char *name)
{
    for (size_t i = 0; i < t->nasked; i++)
        if (strcmp(t->asked[i].name, name) == 0)
            return &t->asked[i].at_ns;
    if (t->nasked == t->cap && tm_grow((void **)&t->asked, &t->cap, t->nasked + 1, sizeof *t->asked) != 0)
        return NULL;
    cli_tag_asked_t *a = &t->asked[t->nasked++];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->at_ns = 0;
    return &a->at_ns;
}

/* The time of the machine's newest app point, 0 if none. A short index
 * read; the loop can afford one per machine per tick. */
static uint64_t cli__last_app(pts_t *pts, const char *name)
{
    pts_query_t q = {.kinds = 1u << PTS_KIND_APP, .limit = 1};
    pts_point_t *v;
    size_t n;
    uint64_t t = 0;
    if (pts_points(pts, name, &q, &v, &n) == 0) {
        if (n)
            t = v[0].time_ns;
        tm_free(v);
    }
    return t;
}

static uint64_t cli__every(const cli_tags_t *t, const char *name)
{
    for (size_t i = 0; i < t->nper; i++)
        if (strcmp(t->per[i].machine, name) == 0)
            return t->per[i].window_ns;
    return t->every_ns;
}

static void cli__tick(uv_timer_t *h)
{
    cli_tags_t *t = h->data;
    uint64_t now = tm_now_ns();
    for (size_t i = 0; i < ingest_machine_count(t->ig); i++) {
        ingest_machine_info_t mi;
        if (ingest_machine_at(t->ig, i, &mi) != 0 || !mi.connected || mi.state != INGEST_MACHINE_PROTECTED)
            continue;
        uint64_t every = cli__every(t, mi.name);
        if (every == UINT64_MAX)
            continue;
        uint64_t *asked = cli__asked(t, mi.name);
        if (!asked)
            return;
        uint64_t last = cli__last_app(t->pts, mi.name);
        if (*asked > last)
            last = *asked;
        if (last && now < last + every)
            continue;
        char name[WIRE_MAX_NAME + 1];
        time_t s = (time_t)(now / 1000000000u);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(name, sizeof name, "auto-%Y%m%dT%H%M%SZ", &tm);
        uint64_t id = now > t->next_id ? now : t->next_id + 1;
        t->next_id = id;
        int rc = ingest_request_tag(t->ig, mi.name, WIRE_TAG_APP, id, name);
        *asked = now;
        if (rc)
            tm_warn("tags: the scheduled app-consistent tag for %s was not asked for: %s", mi.name,
                    tm_strerror(rc));
    }
}

int cli_tags_start(uv_loop_t *loop, ingest_t *ig, pts_t *pts, uint64_t every_ns, const pts_retention_t *per,
                   size_t nper, cli_tags_t **out)
{
    *out = NULL;
    uint64_t shortest = every_ns;
    for (size_t i = 0; i < nper; i++)
        if (per[i].window_ns < shortest)
            shortest = per[i].window_ns;
    if (shortest == UINT64_MAX)
        return 0; /* off for everyone */
    cli_tags_t *t = tm_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->ig = ig;
    t->pts = pts;
    t->every_ns = every_ns;
    if (nper && !(t->per = tm_calloc(nper, sizeof *t->per))) {
        tm_free(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nper; i++) {
        t->per[i].window_ns = per[i].window_ns;
        t->per[i].machine = tm_strdup(per[i].machine);
        t->nper++;
        if (!t->per[i].machine) {
            cli__tags_free(t);
            return -ENOMEM;
        }
    }
    int rc = uv_timer_init(loop, &t->timer);
    if (rc) {
        cli__tags_free(t);
        return rc;
    }
    t->timer.data = t;
    /* a tick a tenth of the shortest period, at most a minute apart */
    uint64_t tick_ms = shortest / 10 / 1000000u;
    if (tick_ms > 60000)
        tick_ms = 60000;
    if (tick_ms < 1000)
        tick_ms = 1000;
    uv_timer_start(&t->timer, cli__tick, tick_ms, tick_ms);
    *out = t;
    return 0;
}

static void cli__tags_closed(uv_handle_t *h)
{
    cli__tags_free(h->data);
}

void cli_tags_stop(cli_tags_t *t)
{
    if (!t)
        return;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, cli__tags_closed);
}
