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

/* ---- the run ------------------------------------------------------------------ */

/* Bounded work per wakeup, so acks and sends are not starved by generation. */
#define PRODUCE_RECORDS_PER_TICK 256u
#define PRODUCE_BYTES_PER_TICK (4u << 20)

typedef struct replay {
    uv_loop_t loop;
    agent_stream_t stream;
    agent_client_t *client;
    agent_workload_t w;
    agent_wl_gen_t gen;
    uint8_t *buf;
    char name[WIRE_MAX_NAME + 1];
    char machine[WIRE_MAX_NAME + 1];

    uv_idle_t idle;         /* generating while active */
    uv_timer_t rate_timer;  /* waiting for the rate to allow more */
    uv_signal_t sigint, sigterm;

    bool started;           /* the first WELCOME came */
    bool done;              /* nothing more to generate */
    bool finishing;         /* closing handles */
    bool interrupted;
    bool stopped;           /* STOP from the server, no RESUME since: generating nothing */
    uint64_t stopped_ms;    /* when it came (the time stopped does not count against rate or duration) */
    bool holding;           /* an app tag's quiesce: generating nothing */
    agent_quiesce_t *q;
    uint64_t start_ms;      /* at the first WELCOME */
    uint64_t first_seq;     /* the first sequence this run generated */
    uint64_t records, writes, tags, bytes; /* generated by this run */
    unsigned tenths;        /* progress reported (count mode), in tenths of the stream */
    int exit_code;
} replay_t;

static void replay_finish(replay_t *r);
static void on_rate_timer(uv_timer_t *t);

static void replay_check_done(replay_t *r)
{
    if (r->done && agent_stream_all_acked(&r->stream) && !(r->q && agent_quiesce_busy(r->q)))
        replay_finish(r);
}

static void replay_produce(replay_t *r)
{
    if (r->done || !r->started)
        return;
    if (r->holding || r->stopped) {
        uv_idle_stop(&r->idle);
        return;
    }
    uint64_t now = uv_now(&r->loop);
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

static void on_rate_timer(uv_timer_t *t)
{
    replay_t *r = t->data;
    if (!r->done && !r->finishing && !r->stopped)
        uv_idle_start(&r->idle, on_idle);
}

static void replay_on_welcome(agent_client_t *c, const wire_welcome_t *wel, void *arg)
{
    replay_t *r = arg;
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
        r->start_ms = uv_now(&r->loop);
        r->first_seq = next_seq;
        if (r->w.count && next_seq > r->w.count)
            tm_info("replay: the server already holds the whole stream (up to sequence %llu)",
                    (unsigned long long)r->w.count);
        if (!r->finishing)
            uv_idle_start(&r->idle, on_idle);
    }
    replay_check_done(r);
}

static void replay_on_acked(agent_client_t *c, uint64_t durable, void *arg)
{
    replay_t *r = arg;
    (void)c;
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
    if (r->started && !r->done && !r->finishing && !r->stopped && !uv_is_active((uv_handle_t *)&r->rate_timer))
        uv_idle_start(&r->idle, on_idle);
    replay_check_done(r);
}

static void replay_on_tag(agent_client_t *c, uint8_t kind, uint64_t id, const char *name, void *arg)
{
    replay_t *r = arg;
    (void)c;
    agent_quiesce_request(r->q, kind, id, name);
}

/* The quiesce's hooks: generation is synchronous, so what was generated is
 * in the stream already; holding is pausing. */
static void replay_hold(void *arg)
{
    replay_t *r = arg;
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
    replay_t *r = arg;
    r->holding = false;
    if (r->started && !r->done && !r->finishing && !r->stopped && !uv_is_active((uv_handle_t *)&r->rate_timer))
        uv_idle_start(&r->idle, on_idle);
    replay_check_done(r);
}

/* STOP: generate nothing more (what was generated is in the stream
 * already, so the final tag follows it at once) until RESUME. */
static void replay_on_stop(agent_client_t *c, const wire_stop_t *m, void *arg)
{
    replay_t *r = arg;
    (void)c;
    if (!r->stopped) {
        r->stopped = true;
        r->stopped_ms = uv_now(&r->loop);
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
    replay_t *r = arg;
    (void)c;
    (void)reason;
    if (!r->stopped)
        return;
    r->stopped = false;
    /* The rate and the duration count generating time only. */
    if (r->started)
        r->start_ms += uv_now(&r->loop) - r->stopped_ms;
    tm_info("replay: generating again");
    if (r->q)
        agent_quiesce_resume(r->q);
    if (r->started && !r->done && !r->finishing && !r->holding)
        uv_idle_start(&r->idle, on_idle);
}

static void on_signal(uv_signal_t *h, int signum)
{
    replay_t *r = h->data;
    if (r->interrupted || !r->started) {
        tm_warn("replay: signal %d; ending without waiting for acknowledgements", signum);
        r->exit_code = 1;
        replay_finish(r);
        return;
    }
    tm_warn("replay: signal %d; generating no more, waiting for the server to acknowledge what is held "
            "(again to end now)", signum);
    r->interrupted = true;
    r->done = true;
    uv_idle_stop(&r->idle);
    uv_timer_stop(&r->rate_timer);
    replay_check_done(r);
}

static void replay_print_summary(replay_t *r)
{
    double secs = (double)(uv_now(&r->loop) - r->start_ms) / 1000.0;
    if (!r->started)
        secs = 0;
    double mbs = secs > 0 ? (double)r->bytes / secs / 1e6 : 0;
    printf("replay: %llu records (%llu writes, %llu tags) from sequence %llu, %llu bytes, acked up to sequence "
           "%llu, %s%.2f s, %.1f MB/s\n",
           (unsigned long long)r->records, (unsigned long long)r->writes, (unsigned long long)r->tags,
           (unsigned long long)r->first_seq, (unsigned long long)r->bytes, (unsigned long long)r->stream.acked_seq,
           agent_stream_all_acked(&r->stream) ? "all acked, " : "NOT all acked, ", secs, mbs);
    fflush(stdout);
}

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void replay_finish(replay_t *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    if (!agent_stream_all_acked(&r->stream))
        r->exit_code = 1;
    replay_print_summary(r);
    uv_close((uv_handle_t *)&r->idle, on_closed_handle);
    uv_close((uv_handle_t *)&r->rate_timer, on_closed_handle);
    uv_close((uv_handle_t *)&r->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&r->sigterm, on_closed_handle);
    if (r->q)
        agent_quiesce_close(r->q);
    r->q = NULL;
    r->holding = false;
    agent_client_close(r->client, NULL, NULL);
    r->client = NULL;
}

int agent_replay_run(const agent_replay_opts_t *o)
{
    replay_t *r = tm_calloc(1, sizeof *r);
    wire_disk_t *disks = NULL;
    int rc, code = 1;
    if (!r) {
        tm_error("replay: out of memory");
        return 1;
    }
    r->w = o->workload;
    snprintf(r->machine, sizeof r->machine, "%s", o->machine ? o->machine : "");
    r->buf = tm_malloc(r->w.bs_max ? r->w.bs_max : WIRE_SECTOR);
    disks = tm_calloc(r->w.disks, sizeof *disks);
    if (!r->buf || !disks) {
        tm_error("replay: out of memory");
        goto free_r;
    }
    for (unsigned i = 0; i < r->w.disks; i++) {
        agent_workload_disk_name(i, disks[i].name);
        disks[i].size = r->w.size;
    }
    if ((rc = uv_loop_init(&r->loop)) != 0) {
        tm_error("replay: cannot make an event loop: %s", uv_strerror(rc));
        goto free_r;
    }
    if ((rc = agent_stream_init(&r->stream, 1, o->queue_bytes)) != 0) {
        tm_error("replay: cannot make the stream: %s", tm_strerror(rc));
        goto close_loop;
    }
    agent_client_opts_t co = {
        .server = o->server,
        .machine = o->machine,
        .agent_version = "tidemark-agent-replay",
        .ndisks = r->w.disks,
        .disks = disks,
        .compress = true,
    };
    memcpy(co.secret, o->secret, AGENT_SECRET_LEN);
    agent_client_cbs_t cbs = {.welcome = replay_on_welcome, .acked = replay_on_acked, .stop = replay_on_stop,
                              .resume = replay_on_resume, .tag = replay_on_tag};
    rc = agent_client_new(&r->loop, &co, &r->stream, &cbs, r, &r->client);
    memset(co.secret, 0, sizeof co.secret);
    if (rc != 0) {
        tm_error("replay: bad server address '%s' or machine name '%s'", o->server, o->machine);
        code = 2;
        goto free_stream;
    }
    agent_quiesce_opts_t qo = {.pre_script = o->pre_script, .post_script = o->post_script,
                               .timeout_ms = o->script_timeout_ms};
    agent_quiesce_hooks_t qh = {.hold = replay_hold, .drained = replay_drained, .release = replay_unhold};
    if ((rc = agent_quiesce_new(&r->loop, &qo, &r->stream, &qh, r, &r->q)) != 0) {
        tm_error("replay: %s", tm_strerror(rc));
        goto free_stream;
    }
    agent_quiesce_set_client(r->q, r->client);
    uv_idle_init(&r->loop, &r->idle);
    uv_timer_init(&r->loop, &r->rate_timer);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->idle.data = r->rate_timer.data = r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);

    tm_info("replay: machine %s, %u disk(s) of %llu bytes, server %s", o->machine, r->w.disks,
            (unsigned long long)r->w.size, o->server);
    agent_client_start(r->client);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    code = r->exit_code;

free_stream:
    if (r->client) {
        agent_client_close(r->client, NULL, NULL);
        uv_run(&r->loop, UV_RUN_DEFAULT);
    }
    agent_stream_free(&r->stream);
close_loop:
    if ((rc = uv_loop_close(&r->loop)) != 0)
        tm_warn("replay: event loop closed with handles open: %s", uv_strerror(rc));
free_r:
    tm_free(disks);
    tm_free(r->buf);
    tm_free(r);
    return code;
}
