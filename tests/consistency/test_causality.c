/*
 * Causality across a group point, with the real serve and two tap agents:
 * a writer writes counter i to machine A and, once A acknowledged it, i to
 * machine B (at offset 0); and at offset 4 KiB the other way round, B
 * first. Meanwhile rounds run back to back. At every group point the
 * value rebuilt for B at 0 is at most A's, and A's at 4 KiB at most B's:
 * a write that depends on another is never in a cut without it. At least
 * CT_ROUNDS group points, seeded random delays between the writes.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/endian.h"
#include "nbd/nbd_int.h"
#include "tests/consistency/ct.h"
#include "tests/nbd/nbdt.h"

#define WAIT_MS 60000
#define CT_ROUNDS 1000
#define IMG_SIZE (1u << 20)

TestSuite(causality, .init = at_setup, .fini = at_teardown, .timeout = 600);

static at_child_t srv, tap_a, tap_b;

static int start_tap(at_child_t *c, const char *machine, const char *secret, const char *img)
{
    FILE *f = fopen(img, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), IMG_SIZE), 0);
    fclose(f);
    char disk_arg[1024];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    at_spawn(c, (const char *[]){"agent", "tap", "--server", ct_agents, "--machine", machine, "--secret-file",
                                 secret, "--disk", disk_arg, "--listen", "127.0.0.1:0", NULL});
    cr_assert(at_wait(c, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", c->err);
    cr_assert(at_wait(c, true, "initial copy complete and durable", WAIT_MS), "%s", c->err);
    return atoi(strstr(c->out, "127.0.0.1:") + strlen("127.0.0.1:"));
}

typedef struct writer {
    int fa, fb;
    uint64_t seed;
    atomic_bool stop;
    uint64_t last;
} writer_t;

static void put(int fd, uint64_t off, uint64_t v)
{
    uint8_t buf[512] = {0};
    tm_put64(buf, v);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, off, sizeof buf, buf, NULL), 0);
}

static void *write_loop(void *arg)
{
    writer_t *w = arg;
    uint64_t x = w->seed | 1;
    for (uint64_t i = 1; !atomic_load(&w->stop); i++) {
        put(w->fa, 0, i); /* acknowledged: then B */
        put(w->fb, 0, i);
        put(w->fb, 4096, i); /* and the other way round */
        put(w->fa, 4096, i);
        w->last = i;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x % 4 == 0) {
            struct timespec ts = {0, (long)(x % 2000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* The two counters of machine at point (offsets 0 and 4 KiB), one open. */
static void values_at(const char *machine, const char *point, uint64_t v[2])
{
    char name[128];
    snprintf(name, sizeof name, "%s/d0@%s", machine, point);
    int port = atoi(strrchr(ct_nbd, ':') + 1);
    uint64_t size;
    int fd = nbdt_open(port, name, &size, NULL);
    uint8_t buf[512];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, (uint64_t)k * 4096, sizeof buf, NULL, buf), 0, "%s", name);
        v[k] = tm_get64(buf);
    }
    close(fd);
}

Test(causality, no_group_point_holds_a_write_without_the_one_it_followed)
{
    const char *data = at_path("data"), *sa = at_path("sa"), *sb = at_path("sb"), *conf = at_path("tm.conf");
    at_machine_add(data, "ma", sa);
    at_machine_add(data, "mb", sb);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    /* rounds on request only; a generous hold (aborted rounds make no point, they do not break the check) */
    fprintf(f, "group.pair = ma, mb\ngroup.pair.crash_every = off\ngroup.pair.app_every = off\n"
               "group.pair.hold = 2s\n");
    fclose(f);
    /* thousands of requests: their log lines would fill the pipes nobody reads while the test runs */
    setenv("TIDEMARK_LOG", "warn", 1);
    ct_serve(&srv, data, conf);
    unsetenv("TIDEMARK_LOG");
    int pa = start_tap(&tap_a, "ma", sa, at_path("a.img"));
    int pb = start_tap(&tap_b, "mb", sb, at_path("b.img"));
    uint64_t size;
    writer_t w = {.fa = nbdt_open(pa, "d0", &size, NULL), .fb = nbdt_open(pb, "d0", &size, NULL),
                  .seed = tmt_env_u64("TIDEMARK_CAUSALITY_SEED", 0xca05a1)};
    printf("seed %#llx\n", (unsigned long long)w.seed);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, write_loop, &w), 0);

    json_int_t recorded = 0;
    uint64_t seen = 0, seen_at = 0;
    time_t t_start = time(NULL);
    for (int tries = 0; recorded < CT_ROUNDS && tries < 200000; tries++) {
        /* a writer stuck for 10 s: say what the agents and the appliance said */
        uint64_t now = (uint64_t)time(NULL);
        if (w.last != seen || !seen_at) {
            seen = w.last;
            seen_at = now;
        } else if (now - seen_at > 10) {
            at_wait(&tap_a, true, "\x01", 10);
            at_wait(&tap_b, true, "\x01", 10);
            at_wait(&srv, true, "\x01", 10);
            cr_assert_fail("the writer is stuck at %llu\n--- tap a:\n%s\n--- tap b:\n%s\n--- serve:\n%s",
                           (unsigned long long)w.last, tap_a.err, tap_b.err, srv.err);
        }
        json_t *j;
        long st = ct_http("/v1/groups/pair/rounds", "{}", &j);
        cr_assert(st == 202 || st == 409, "%ld %s", st, json_dumps(j, 0));
        json_decref(j);
        if (st == 409)
            usleep(500);
        if (tries % 50 == 0) {
            /* read what the children logged, so that they never block writing it */
            at_wait(&srv, true, "\x01", 5);
            at_wait(&tap_a, true, "\x01", 5);
            at_wait(&tap_b, true, "\x01", 5);
            json_t *g = ct_get_ok("/v1/groups");
            recorded = json_integer_value(
                json_object_get(json_object_get(json_array_get(json_object_get(g, "groups"), 0), "rounds"), "recorded"));
            json_decref(g);
        }
    }
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    time_t t_rounds = time(NULL);
    cr_assert_geq(recorded, CT_ROUNDS, "only %lld rounds recorded", (long long)recorded);

    json_t *gp = ct_get_ok("/v1/groups/pair/points?limit=100000");
    const json_t *pts = json_object_get(gp, "points");
    size_t n = json_array_size(pts), checked = 0, nonzero = 0;
    cr_assert_geq(n, CT_ROUNDS);
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(pts, i);
        if (!json_is_true(json_object_get(p, "whole")))
            continue;
        const char *ida = NULL, *idb = NULL;
        const json_t *ms = json_object_get(p, "members");
        for (size_t k = 0; k < json_array_size(ms); k++) {
            const json_t *m = json_array_get(ms, k);
            const char *mn = json_string_value(json_object_get(m, "machine"));
            const char *id = json_string_value(json_object_get(m, "point"));
            if (strcmp(mn, "ma") == 0)
                ida = id;
            else
                idb = id;
        }
        cr_assert(ida && idb);
        uint64_t va[2], vb[2];
        values_at("ma", ida, va);
        values_at("mb", idb, vb);
        uint64_t a0 = va[0], b0 = vb[0], a1 = va[1], b1 = vb[1];
        cr_assert_leq(b0, a0, "round %s: B holds write %" PRIu64 " but A only %" PRIu64 " (seed %#llx)",
                      json_string_value(json_object_get(p, "round")), b0, a0, (unsigned long long)w.seed);
        cr_assert_leq(a1, b1, "round %s: A holds write %" PRIu64 " at 4 KiB but B only %" PRIu64 " (seed %#llx)",
                      json_string_value(json_object_get(p, "round")), a1, b1, (unsigned long long)w.seed);
        checked++;
        nonzero += a0 > 0;
    }
    printf("%zu group points checked (%zu after the first write), %llu writes per machine and offset; rounds %lld s, "
           "checks %lld s\n",
           checked, nonzero, (unsigned long long)w.last, (long long)(t_rounds - t_start),
           (long long)(time(NULL) - t_rounds));
    cr_assert_geq(checked, CT_ROUNDS);
    cr_assert_gt(nonzero, CT_ROUNDS / 2, "the rounds did not overlap the writes");
    json_decref(gp);
    close(w.fa);
    close(w.fb);
}
