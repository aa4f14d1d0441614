/*
 * The replay agent: a workload generator feeding the stream, and the client
 * sending it. Generation starts only at the first WELCOME, from the
 * server's next_seq, because the content of a record depends on its
 * sequence: a restarted agent must regenerate exactly what the server lacks.
 */
#include "agent/replay.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "agent/client.h"
#include "agent/quiesce.h"
#include "agent/stream.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* ---- the workload spec ----------------------------------------------------- */

static int parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_frac(const char *s, double *out)
{
    char *end;
    if (!*s)
        return -1;
    double v = strtod(s, &end);
    if (*end || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

static int add_bs(agent_workload_t *w, const char *item, char *err, size_t errlen)
{
    char sz[32];
    const char *colon = strchr(item, ':');
    size_t n = colon ? (size_t)(colon - item) : strlen(item);
    uint64_t size, weight = 1;
    if (n == 0 || n >= sizeof sz) {
        snprintf(err, errlen, "workload: bs: '%s' is not SIZE[:WEIGHT]", item);
        return TM_EINVAL;
    }
    memcpy(sz, item, n);
    sz[n] = '\0';
    if (parse_bytes(sz, &size) != 0 || size == 0 || size % WIRE_SECTOR || size > WIRE_MAX_WRITE) {
        snprintf(err, errlen, "workload: bs: size '%s' must be a multiple of 512 bytes up to 1M", sz);
        return TM_EINVAL;
    }
    if (colon && (parse_u64(colon + 1, &weight) != 0 || weight == 0 || weight > 1000000)) {
        snprintf(err, errlen, "workload: bs: weight '%s' must be a whole number from 1 to 1000000", colon + 1);
        return TM_EINVAL;
    }
    if (w->nbs == AGENT_WL_MAX_BS) {
        snprintf(err, errlen, "workload: bs: at most %u sizes", AGENT_WL_MAX_BS);
        return TM_EINVAL;
    }
    w->bs[w->nbs] = (uint32_t)size;
    w->bs_weight[w->nbs] = (uint32_t)weight;
    w->nbs++;
    return 0;
}

int agent_workload_parse(const char *spec, agent_workload_t *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->disks = 1;
    w->size = 1ull << 30;
    w->locality = 0.5;
    w->compress = 0.5;
    w->seed = 1;
    bool have_duration = false, have_count = false, in_bs = false;
    int rc = 0;

    char *copy = tm_strdup(spec ? spec : "");
    if (!copy) {
        snprintf(err, errlen, "workload: out of memory");
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (in_bs) {
                if ((rc = add_bs(w, tok, err, errlen)) != 0)
                    goto done;
                continue;
            }
            snprintf(err, errlen, "workload: '%s' is not key=value", tok);
            rc = TM_EINVAL;
            goto done;
        }
        *eq = '\0';
        const char *key = tok, *val = eq + 1;
        uint64_t u;
        in_bs = false;
        if (strcmp(key, "disks") == 0) {
            if (parse_u64(val, &u) != 0 || u < 1 || u > WIRE_MAX_DISKS) {
                snprintf(err, errlen, "workload: disks=%s: must be 1 to %u", val, WIRE_MAX_DISKS);
                rc = TM_EINVAL;
                goto done;
            }
            w->disks = (unsigned)u;
        } else if (strcmp(key, "size") == 0) {
            if (parse_bytes(val, &u) != 0 || u == 0 || u % WIRE_SECTOR) {
                snprintf(err, errlen, "workload: size=%s: must be a size in bytes (K/M/G/T suffixes), a "
                         "multiple of 512", val);
                rc = TM_EINVAL;
                goto done;
            }
            w->size = u;
        } else if (strcmp(key, "rate") == 0) {
            if (parse_bytes(val, &u) != 0) {
                snprintf(err, errlen, "workload: rate=%s: must be bytes per second (K/M/G suffixes), 0 for "
                         "as fast as possible", val);
                rc = TM_EINVAL;
                goto done;
            }
            w->rate = u;
        } else if (strcmp(key, "bs") == 0) {
            in_bs = true;
            if ((rc = add_bs(w, val, err, errlen)) != 0)
                goto done;
        } else if (strcmp(key, "locality") == 0) {
            if (parse_frac(val, &w->locality) != 0) {
                snprintf(err, errlen, "workload: locality=%s: must be a fraction from 0 to 1", val);
                rc = TM_EINVAL;
                goto done;
            }
        } else if (strcmp(key, "compress") == 0) {
            if (parse_frac(val, &w->compress) != 0) {
                snprintf(err, errlen, "workload: compress=%s: must be a fraction from 0 to 1", val);
                rc = TM_EINVAL;
                goto done;
            }
        } else if (strcmp(key, "duration") == 0) {
            char *end;
            double d = strtod(val, &end);
            if (!*val || *end || !(d > 0 && d <= 1e7)) {
                snprintf(err, errlen, "workload: duration=%s: must be a number of seconds above 0", val);
                rc = TM_EINVAL;
                goto done;
            }
            w->duration = d;
            have_duration = true;
        } else if (strcmp(key, "count") == 0) {
            if (parse_u64(val, &u) != 0 || u == 0) {
                snprintf(err, errlen, "workload: count=%s: must be a number of records above 0", val);
                rc = TM_EINVAL;
                goto done;
            }
            w->count = u;
            have_count = true;
        } else if (strcmp(key, "seed") == 0) {
            if (parse_u64(val, &w->seed) != 0) {
                snprintf(err, errlen, "workload: seed=%s: must be a whole number", val);
                rc = TM_EINVAL;
                goto done;
            }
        } else if (strcmp(key, "tags") == 0) {
            if (parse_u64(val, &w->tags) != 0) {
                snprintf(err, errlen, "workload: tags=%s: must be a number of writes (0: no tags)", val);
                rc = TM_EINVAL;
                goto done;
            }
        } else {
            snprintf(err, errlen, "workload: unknown key '%s' (known: disks, size, rate, bs, locality, compress, "
                     "duration, count, seed, tags)", key);
            rc = TM_EINVAL;
            goto done;
        }
    }
    if (have_duration && have_count) {
        snprintf(err, errlen, "workload: give duration= or count=, not both");
        rc = TM_EINVAL;
        goto done;
    }
    if (!have_duration && !have_count)
        w->duration = 10;
    if (w->nbs == 0) {
        w->nbs = 1;
        w->bs[0] = 4096;
        w->bs_weight[0] = 1;
    }
    for (unsigned i = 0; i < w->nbs; i++) {
        w->bs_total += w->bs_weight[i];
        if (w->bs[i] > w->bs_max)
            w->bs_max = w->bs[i];
    }
    if (w->size < w->bs_max) {
        snprintf(err, errlen, "workload: size=%llu is smaller than the largest write (bs %u)",
                 (unsigned long long)w->size, w->bs_max);
        rc = TM_EINVAL;
        goto done;
    }
done:
    tm_free(copy);
    return rc;
}

void agent_workload_disk_name(unsigned i, char *out)
{
    snprintf(out, WIRE_MAX_NAME + 1, "disk%u", i);
}

/* ---- the generator ----------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A value determined by (seed, index, salt): which coin is being tossed. */
static uint64_t h3(uint64_t seed, uint64_t idx, uint64_t salt)
{
    return mix64(mix64(seed ^ 0x7469646d61726bull) ^ mix64(idx * 0x100000001b3ull + salt));
}

/* Every write continuing its predecessor would make the walk back to the
 * run's start unbounded; a run is cut every RUN_MAX writes. */
#define RUN_MAX 1024u

static bool wl_near(const agent_workload_t *w, uint64_t wi)
{
    if (wi <= 1 || wi % RUN_MAX == 0)
        return false;
    /* 53 bits give an exact double in [0, 1). */
    double u = (double)(h3(w->seed, wi, 1) >> 11) / 9007199254740992.0;
    return u < w->locality;
}

static uint32_t wl_len(const agent_workload_t *w, uint64_t wi)
{
    uint32_t pick = (uint32_t)(h3(w->seed, wi, 2) % w->bs_total);
    for (unsigned i = 0; i < w->nbs; i++) {
        if (pick < w->bs_weight[i])
            return w->bs[i];
        pick -= w->bs_weight[i];
    }
    return w->bs[w->nbs - 1];
}

/* Where write wi goes: a run starts at a random aligned place on a random
 * disk; each further write of the run goes right after the previous one,
 * back to offset 0 at the disk's end. */
static void wl_place(const agent_workload_t *w, agent_wl_gen_t *gen, uint64_t wi, uint16_t *disk, uint64_t *off)
{
    uint32_t len = wl_len(w, wi);
    if (gen && gen->w && gen->w + 1 == wi && wl_near(w, wi)) {
        *disk = gen->disk;
        *off = gen->off + gen->len;
    } else {
        uint64_t a = wi;
        while (wl_near(w, a))
            a--;
        uint32_t alen = wl_len(w, a);
        uint64_t slots = (w->size - alen) / WIRE_SECTOR + 1;
        uint64_t o = (h3(w->seed, a, 3) % slots) * WIRE_SECTOR;
        uint16_t d = (uint16_t)(h3(w->seed, a, 4) % w->disks);
        for (uint64_t i = a + 1; i <= wi; i++) {
            uint32_t plen = wl_len(w, i - 1);
            o += plen;
            if (o + wl_len(w, i) > w->size)
                o = 0;
        }
        *disk = d;
        *off = o;
        if (gen) {
            gen->w = wi;
            gen->off = o;
            gen->len = len;
            gen->disk = d;
        }
        return;
    }
    if (*off + len > w->size)
        *off = 0;
    gen->w = wi;
    gen->off = *off;
    gen->len = len;
}

static void wl_fill(const agent_workload_t *w, uint64_t wi, uint8_t *buf, uint32_t len)
{
    uint32_t comp = (uint32_t)(w->compress * len);
    uint64_t pat = h3(w->seed, wi, 5);
    /* The compressible part: an 8-byte pattern repeated (lz4 shrinks it to
     * almost nothing); the rest is noise from a xorshift stream. */
    uint32_t i = 0;
    for (; i + 8 <= comp; i += 8)
        memcpy(buf + i, &pat, 8);
    for (; i < comp; i++)
        buf[i] = (uint8_t)(pat >> (8 * (i % 8)));
    uint64_t x = h3(w->seed, wi, 6) | 1;
    for (; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    for (; i < len; i++)
        buf[i] = (uint8_t)(x >> (8 * (i % 8)));
}

void agent_workload_record(const agent_workload_t *w, agent_wl_gen_t *gen, uint64_t seq, wire_entry_t *e,
                           uint8_t *buf, char *name)
{
    memset(e, 0, sizeof *e);
    /* A replay disk starts all zero, as the appliance's copy of it does: its
     * initial copy is complete before any write, and the stream says so
     * first. Placing the SYNCED records at fixed sequences keeps every
     * record a function of (workload, seq), so a restart still resumes
     * exactly; the writes those sequences would have had are skipped. */
    if (seq <= w->disks) {
        e->kind = WIRE_R_SYNCED;
        e->disk = (uint16_t)(seq - 1);
        return;
    }
    uint64_t wi = seq;
    if (w->tags) {
        if (seq % (w->tags + 1) == 0) {
            uint64_t id = seq / (w->tags + 1);
            int n = snprintf(name, WIRE_MAX_NAME + 1, "replay-%llu", (unsigned long long)id);
            e->kind = WIRE_R_TAG;
            e->tag_kind = WIRE_TAG_APP;
            e->id = id;
            e->length = (uint32_t)n;
            e->data = (const uint8_t *)name;
            return;
        }
        wi = seq - seq / (w->tags + 1);
    }
    uint16_t disk;
    uint64_t off;
    wl_place(w, gen, wi, &disk, &off);
    e->kind = WIRE_R_WRITE;
    e->disk = disk;
    e->offset = off;
    e->length = wl_len(w, wi);
    wl_fill(w, wi, buf, e->length);
    e->data = buf;
}

/* ---- the agent ------------------------------------------------------------------ */

/* Bounded work per wakeup, so acks and sends are not starved by generation,
 * and the loop's other handles (a group round's hold limit, other agents
 * embedded on the same loop) wait about a millisecond at most for it. */
#define PRODUCE_RECORDS_PER_TICK 64u
#define PRODUCE_BYTES_PER_TICK (1u << 20)

struct agent_replay {
    uv_loop_t *loop;
    agent_stream_t stream;
    agent_client_t *client;
    agent_workload_t w;
    agent_wl_gen_t gen;
    uint8_t *buf;
    char name[WIRE_MAX_NAME + 1];
    char machine[WIRE_MAX_NAME + 1];
    void (*done_cb)(void *arg);
    void *done_arg;

    uv_idle_t idle;         /* generating while active */
    uv_timer_t rate_timer;  /* waiting for the rate to allow more */

    bool started;           /* the first WELCOME came */
    bool done;              /* nothing more to generate */
    bool done_told;         /* done_cb was called */
    bool closing;           /* agent_replay_close was called */
    bool stopped;           /* STOP from the server, no RESUME since: generating nothing */
    uint64_t stopped_ms;    /* when it came (the time stopped does not count against rate or duration) */
    bool holding;           /* an app tag's quiesce or a group round: generating nothing */
    agent_quiesce_t *q;
    uint64_t start_ms;      /* at the first WELCOME */
    uint64_t first_seq;     /* the first sequence this run generated */
    uint64_t records, writes, tags, bytes; /* generated by this run */
    unsigned tenths;        /* progress reported (count mode), in tenths of the stream */

    unsigned pending_closes;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void on_rate_timer(uv_timer_t *t);

static void replay_check_done(agent_replay_t *r)
{
    if (r->closing || r->done_told)
        return;
    if (r->done && agent_stream_all_acked(&r->stream) && !(r->q && agent_quiesce_busy(r->q))) {
        r->done_told = true;
        if (r->done_cb)
            r->done_cb(r->done_arg);
    }
}

static void replay_produce(agent_replay_t *r)
{
    if (r->done || !r->started || r->closing)
        return;
    if (r->holding || r->stopped) {
        uv_idle_stop(&r->idle);
        return;
    }
    uint64_t now = uv_now(r->loop);
    uint64_t budget = PRODUCE_BYTES_PER_TICK;
    if (r->w.rate) {
        /* The bytes the rate allows since the start, minus what was made. */
        double allowed = (double)r->w.rate * (double)(now - r->start_ms) / 1000.0 - (double)r->bytes;
        if (allowed < 1) {
            uint64_t wait = (uint64_t)ceil((1.0 - allowed) * 1000.0 / (double)r->w.rate);
            uv_idle_stop(&r->idle);
            uv_timer_start(&r->rate_timer, on_rate_timer, wait ? wait : 1, 0);
            return;
        }
        if ((uint64_t)allowed < budget)
            budget = (uint64_t)allowed + r->w.bs_max; /* one write may overshoot a little */
    }
    unsigned n = 0;
    uint64_t made = 0;
    while (n < PRODUCE_RECORDS_PER_TICK && made < budget) {
        if (r->w.count && r->stream.next_seq > r->w.count) {
            r->done = true;
            break;
        }
        if (!r->w.count && now - r->start_ms >= (uint64_t)(r->w.duration * 1000.0)) {
            r->done = true;
            break;
        }
        if (!agent_stream_has_room(&r->stream, r->w.bs_max)) {
            /* Wait for acks (replay_on_acked restarts the idle). */
            uv_idle_stop(&r->idle);
            break;
        }
        wire_entry_t e;
        agent_workload_record(&r->w, &r->gen, r->stream.next_seq, &e, r->buf, r->name);
        int rc = agent_stream_append(&r->stream, &e, false, NULL);
        if (rc != 0) {
            tm_error("replay: cannot append record %llu: %s", (unsigned long long)r->stream.next_seq,
                     tm_strerror(rc));
            r->done = true;
            break;
        }
        n++;
        r->records++;
        if (e.kind == WIRE_R_WRITE) {
            r->writes++;
            r->bytes += e.length;
            made += e.length;
        } else if (e.kind == WIRE_R_TAG) {
            r->tags++;
        }
    }
    if (r->done)
        uv_idle_stop(&r->idle);
    if (n)
        agent_client_kick(r->client);
    replay_check_done(r);
}

static void on_idle(uv_idle_t *h)
{
    replay_produce(h->data);
}

/* Generate again, unless something says not to. */
static void replay_go(agent_replay_t *r)
{
    if (r->started && !r->done && !r->closing && !r->stopped && !r->holding &&
        !uv_is_active((uv_handle_t *)&r->rate_timer))
        uv_idle_start(&r->idle, on_idle);
}

static void on_rate_timer(uv_timer_t *t)
{
    agent_replay_t *r = t->data;
    replay_go(r);
}

static void replay_on_welcome(agent_client_t *c, const wire_welcome_t *wel, void *arg)
{
    agent_replay_t *r = arg;
    uint64_t next_seq = wel->next_seq;
    (void)c;
    /* Disk d's SYNCED is record d + 1: a disk the server still wants whole
     * gets it from the stream unless the stream is already past it (a
     * machine another kind of agent streamed before). */
    for (unsigned d = 0; d < wel->ndisks; d++)
        if (wel->disk_state[d] == WIRE_DISK_NEW && next_seq > (uint64_t)d + 1)
            tm_warn("replay: the server wants disk %u of machine %s whole, but its stream is past this "
                    "workload's SYNCED record (sequence %u); replay does not copy disks",
                    d, r->machine, d + 1);
    if (!r->started) {
        r->started = true;
        r->start_ms = uv_now(r->loop);
        r->first_seq = next_seq;
        if (r->w.count && next_seq > r->w.count)
            tm_info("replay: the server already holds the whole stream (up to sequence %llu)",
                    (unsigned long long)r->w.count);
        replay_go(r);
    }
    replay_check_done(r);
}

static void replay_on_acked(agent_client_t *c, uint64_t durable, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    /* A round past its hold limit ends before anything else is done. */
    if (r->holding)
        agent_quiesce_poll(r->q);
    /* Progress in tenths of the stream (count mode): for people, and for
     * tests that must act mid-stream. */
    if (r->w.count) {
        unsigned t = (unsigned)((durable >= r->w.count ? r->w.count : durable) * 10 / r->w.count);
        if (t > r->tenths) {
            r->tenths = t;
            tm_info("replay: %u%% acknowledged (sequence %llu of %llu)", t * 10, (unsigned long long)durable,
                    (unsigned long long)r->w.count);
        }
    }
    replay_go(r);
    replay_check_done(r);
}

static void replay_on_tag(agent_client_t *c, uint8_t kind, uint64_t id, const char *name, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    agent_quiesce_request(r->q, kind, id, name);
}

static void replay_on_group_prepare(agent_client_t *c, const wire_group_prepare_t *m, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    agent_quiesce_group_prepare(r->q, m);
}

static void replay_on_group_commit(agent_client_t *c, uint64_t round, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    agent_quiesce_group_commit(r->q, round);
}

static void replay_on_group_abort(agent_client_t *c, uint64_t round, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    agent_quiesce_group_abort(r->q, round);
}

static void replay_on_down(agent_client_t *c, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    agent_quiesce_session_lost(r->q);
}

/* The quiesce's hooks: generation is synchronous, so what was generated is
 * in the stream already; holding is pausing. */
static void replay_hold(void *arg)
{
    agent_replay_t *r = arg;
    r->holding = true;
    uv_idle_stop(&r->idle);
}

static bool replay_drained(void *arg)
{
    (void)arg;
    return true;
}

static void replay_unhold(void *arg)
{
    agent_replay_t *r = arg;
    r->holding = false;
    replay_go(r);
    replay_check_done(r);
}

/* A group tag follows the disks' SYNCED records (the replay's initial
 * copy): before them no point exists. Stopped, the STOP's final tag is the
 * point. */
static bool replay_round_refused(void *arg, char *why, size_t len)
{
    agent_replay_t *r = arg;
    if (r->stopped) {
        snprintf(why, len, "stopped");
        return true;
    }
    if (r->stream.next_seq <= r->w.disks) {
        snprintf(why, len, "the disks' SYNCED records are not in the stream yet: no consistent point can be cut "
                 "there");
        return true;
    }
    return false;
}

/* STOP: generate nothing more (what was generated is in the stream
 * already, so the final tag follows it at once) until RESUME. */
static void replay_on_stop(agent_client_t *c, const wire_stop_t *m, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    if (!r->stopped) {
        r->stopped = true;
        r->stopped_ms = uv_now(r->loop);
        tm_info("replay: generating nothing until the appliance resumes replication");
    }
    uv_idle_stop(&r->idle);
    uv_timer_stop(&r->rate_timer);
    if (r->q)
        agent_quiesce_stop(r->q, m->id, m->name);
    replay_check_done(r);
}

static void replay_on_resume(agent_client_t *c, const char *reason, void *arg)
{
    agent_replay_t *r = arg;
    (void)c;
    (void)reason;
    if (!r->stopped)
        return;
    r->stopped = false;
    /* The rate and the duration count generating time only. */
    if (r->started)
        r->start_ms += uv_now(r->loop) - r->stopped_ms;
    tm_info("replay: generating again");
    if (r->q)
        agent_quiesce_resume(r->q);
    replay_go(r);
}

int agent_replay_new(uv_loop_t *loop, const agent_replay_opts_t *o, agent_replay_t **out)
{
    int rc;
    agent_replay_t *r = tm_calloc(1, sizeof *r);
    wire_disk_t *disks = NULL;
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->w = o->workload;
    r->done_cb = o->done;
    r->done_arg = o->done_arg;
    snprintf(r->machine, sizeof r->machine, "%s", o->machine ? o->machine : "");
    r->buf = tm_malloc(r->w.bs_max ? r->w.bs_max : WIRE_SECTOR);
    disks = tm_calloc(r->w.disks ? r->w.disks : 1, sizeof *disks);
    if (!r->buf || !disks) {
        rc = -ENOMEM;
        goto free_r;
    }
    for (unsigned i = 0; i < r->w.disks; i++) {
        agent_workload_disk_name(i, disks[i].name);
        disks[i].size = r->w.size;
    }
    if ((rc = agent_stream_init(&r->stream, 1, o->queue_bytes)) != 0)
        goto free_r;
    agent_client_opts_t co = {
        .server = o->server,
        .machine = o->machine,
        .agent_version = "tidemark-agent-replay",
        .ndisks = r->w.disks,
        .disks = disks,
        .compress = true,
        .backoff_max_ms = o->backoff_max_ms,
    };
    memcpy(co.secret, o->secret, AGENT_SECRET_LEN);
    agent_client_cbs_t cbs = {.welcome = replay_on_welcome, .acked = replay_on_acked, .stop = replay_on_stop,
                              .resume = replay_on_resume, .tag = replay_on_tag,
                              .group_prepare = replay_on_group_prepare, .group_commit = replay_on_group_commit,
                              .group_abort = replay_on_group_abort, .down = replay_on_down};
    rc = agent_client_new(loop, &co, &r->stream, &cbs, r, &r->client);
    memset(co.secret, 0, sizeof co.secret);
    if (rc != 0)
        goto free_stream;
    agent_quiesce_opts_t qo = {.pre_script = o->pre_script, .post_script = o->post_script,
                               .timeout_ms = o->script_timeout_ms};
    agent_quiesce_hooks_t qh = {.hold = replay_hold, .drained = replay_drained, .release = replay_unhold,
                                .round_refused = replay_round_refused};
    if ((rc = agent_quiesce_new(loop, &qo, &r->stream, &qh, r, &r->q)) != 0) {
        /* the client has handles: it goes through its close; nothing was
         * started, so the loop's next run frees it */
        agent_client_close(r->client, NULL, NULL);
        goto free_stream;
    }
    agent_quiesce_set_client(r->q, r->client);
    uv_idle_init(loop, &r->idle);
    uv_timer_init(loop, &r->rate_timer);
    r->idle.data = r->rate_timer.data = r;
    tm_free(disks);
    *out = r;
    return 0;

free_stream:
    agent_stream_free(&r->stream);
free_r:
    tm_free(disks);
    tm_free(r->buf);
    tm_free(r);
    return rc;
}

void agent_replay_start(agent_replay_t *r)
{
    tm_info("replay: machine %s, %u disk(s) of %llu bytes", r->machine, r->w.disks, (unsigned long long)r->w.size);
    agent_client_start(r->client);
}

agent_client_t *agent_replay_client(agent_replay_t *r)
{
    return r->client;
}

bool agent_replay_done(const agent_replay_t *r)
{
    return r->done_told;
}

void agent_replay_finish(agent_replay_t *r)
{
    if (r->closing)
        return;
    r->done = true;
    uv_idle_stop(&r->idle);
    uv_timer_stop(&r->rate_timer);
    replay_check_done(r);
}

void agent_replay_summary(const agent_replay_t *r, char *buf, size_t len)
{
    double secs = r->started ? (double)(uv_now(r->loop) - r->start_ms) / 1000.0 : 0;
    double mbs = secs > 0 ? (double)r->bytes / secs / 1e6 : 0;
    snprintf(buf, len,
             "replay: %llu records (%llu writes, %llu tags) from sequence %llu, %llu bytes, acked up to sequence "
             "%llu, %s%.2f s, %.1f MB/s",
             (unsigned long long)r->records, (unsigned long long)r->writes, (unsigned long long)r->tags,
             (unsigned long long)r->first_seq, (unsigned long long)r->bytes, (unsigned long long)r->stream.acked_seq,
             agent_stream_all_acked(&r->stream) ? "all acked, " : "NOT all acked, ", secs, mbs);
}

bool agent_replay_all_acked(const agent_replay_t *r)
{
    return agent_stream_all_acked(&r->stream);
}

static void replay_closed_one(agent_replay_t *r)
{
    if (--r->pending_closes)
        return;
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;
    agent_stream_free(&r->stream);
    tm_free(r->buf);
    tm_free(r);
    if (cb)
        cb(arg);
}

static void replay_on_handle_closed(uv_handle_t *h)
{
    replay_closed_one(h->data);
}

static void replay_on_client_closed(void *arg)
{
    replay_closed_one(arg);
}

void agent_replay_close(agent_replay_t *r, void (*cb)(void *arg), void *arg)
{
    r->closing = true;
    r->close_cb = cb;
    r->close_arg = arg;
    r->pending_closes = 3;
    uv_close((uv_handle_t *)&r->idle, replay_on_handle_closed);
    uv_close((uv_handle_t *)&r->rate_timer, replay_on_handle_closed);
    /* The quiesce frees itself once its handles are closed; it calls no
     * hook and touches nothing of r from here on. */
    agent_quiesce_close(r->q);
    r->q = NULL;
    r->holding = false;
    agent_client_close(r->client, replay_on_client_closed, r);
    r->client = NULL;
}

/* ---- `tidemark agent replay`: one agent on a loop of its own ------------------------- */

typedef struct replay_run {
    uv_loop_t loop;
    agent_replay_t *r;
    uv_signal_t sigint, sigterm;
    bool interrupted;
    bool ended;
    int exit_code;
} replay_run_t;

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

/* Print the summaries and close everything; the loop ends. */
static void run_end(replay_run_t *run)
{
    if (run->ended)
        return;
    run->ended = true;
    agent_replay_t *r = run->r;
    char line[512];
    if (!agent_replay_all_acked(r))
        run->exit_code = 1;
    agent_client_round_summary(agent_replay_client(r), line, sizeof line);
    tm_info("replay: %s", line);
    agent_replay_summary(r, line, sizeof line);
    printf("%s\n", line);
    fflush(stdout);
    uv_close((uv_handle_t *)&run->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&run->sigterm, on_closed_handle);
    agent_replay_close(r, NULL, NULL);
}

static void run_on_done(void *arg)
{
    run_end(arg);
}

static void on_signal(uv_signal_t *h, int signum)
{
    replay_run_t *run = h->data;
    agent_replay_t *r = run->r;
    if (run->interrupted || !r->started) {
        tm_warn("replay: signal %d; ending without waiting for acknowledgements", signum);
        run->exit_code = 1;
        run_end(run);
        return;
    }
    tm_warn("replay: signal %d; generating no more, waiting for the server to acknowledge what is held "
            "(again to end now)", signum);
    run->interrupted = true;
    agent_replay_finish(r);
}

int agent_replay_run(const agent_replay_opts_t *o)
{
    replay_run_t *run = tm_calloc(1, sizeof *run);
    int rc, code = 1;
    if (!run) {
        tm_error("replay: out of memory");
        return 1;
    }
    if ((rc = uv_loop_init(&run->loop)) != 0) {
        tm_error("replay: cannot make an event loop: %s", uv_strerror(rc));
        tm_free(run);
        return 1;
    }
    agent_replay_opts_t ro = *o;
    ro.done = run_on_done;
    ro.done_arg = run;
    rc = agent_replay_new(&run->loop, &ro, &run->r);
    if (rc == TM_EINVAL) {
        tm_error("replay: bad server address '%s' or machine name '%s'", o->server, o->machine);
        code = 2;
    } else if (rc != 0) {
        tm_error("replay: %s", tm_strerror(rc));
    }
    if (rc != 0) {
        uv_run(&run->loop, UV_RUN_DEFAULT);
        goto close_loop;
    }
    uv_signal_init(&run->loop, &run->sigint);
    uv_signal_init(&run->loop, &run->sigterm);
    run->sigint.data = run->sigterm.data = run;
    uv_signal_start(&run->sigint, on_signal, SIGINT);
    uv_signal_start(&run->sigterm, on_signal, SIGTERM);
    tm_info("replay: server %s", o->server);
    agent_replay_start(run->r);
    uv_run(&run->loop, UV_RUN_DEFAULT);
    code = run->exit_code;
close_loop:
    if ((rc = uv_loop_close(&run->loop)) != 0)
        tm_warn("replay: event loop closed with handles open: %s", uv_strerror(rc));
    tm_free(run);
    return code;
}
