/* The replay workload: the spec parser (good and bad specs, clear errors)
 * and the generator (a pure function of the workload and the sequence). */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/replay.h"
#include "base/err.h"
#include "base/mem.h"
#include "wire/msg.h"

static agent_workload_t wl;
static char err[512];

Test(workload, defaults)
{
    cr_assert_eq(agent_workload_parse("", &wl, err, sizeof err), 0, "%s", err);
    cr_assert_eq(wl.disks, 1);
    cr_assert_eq(wl.size, 1ull << 30);
    cr_assert_eq(wl.rate, 0);
    cr_assert_eq(wl.nbs, 1);
    cr_assert_eq(wl.bs[0], 4096);
    cr_assert_eq(wl.count, 0);
    cr_assert_eq(wl.duration, 10.0);
    cr_assert_eq(wl.seed, 1);
    cr_assert_eq(wl.tags, 0);
}

Test(workload, full_spec)
{
    const char *spec = "disks=3,size=2G,rate=50M,bs=4k:70,64k:30,locality=0.8,compress=0.25,count=1000,seed=9,"
                       "tags=50";
    cr_assert_eq(agent_workload_parse(spec, &wl, err, sizeof err), 0, "%s", err);
    cr_assert_eq(wl.disks, 3);
    cr_assert_eq(wl.size, 2ull << 30);
    cr_assert_eq(wl.rate, 50ull << 20);
    cr_assert_eq(wl.nbs, 2);
    cr_assert_eq(wl.bs[0], 4096);
    cr_assert_eq(wl.bs_weight[0], 70);
    cr_assert_eq(wl.bs[1], 65536);
    cr_assert_eq(wl.bs_weight[1], 30);
    cr_assert_eq(wl.bs_total, 100);
    cr_assert_eq(wl.bs_max, 65536);
    cr_assert_float_eq(wl.locality, 0.8, 1e-9);
    cr_assert_float_eq(wl.compress, 0.25, 1e-9);
    cr_assert_eq(wl.count, 1000);
    cr_assert_eq(wl.seed, 9);
    cr_assert_eq(wl.tags, 50);

    cr_assert_eq(agent_workload_parse("duration=2.5,bs=1m", &wl, err, sizeof err), 0, "%s", err);
    cr_assert_float_eq(wl.duration, 2.5, 1e-9);
    cr_assert_eq(wl.bs[0], 1u << 20);
    cr_assert_eq(wl.bs_weight[0], 1);
}

static void bad(const char *spec, const char *want)
{
    err[0] = '\0';
    cr_assert_eq(agent_workload_parse(spec, &wl, err, sizeof err), TM_EINVAL, "spec '%s' was taken", spec);
    cr_assert(strstr(err, want), "spec '%s': error '%s' does not say '%s'", spec, err, want);
}

Test(workload, bad_specs_say_why)
{
    bad("disks=0", "disks=0: must be 1 to 64");
    bad("disks=65", "disks=65: must be 1 to 64");
    bad("size=12", "size=12: must be a size in bytes");
    bad("size=1X", "size=1X");
    bad("rate=fast", "rate=fast: must be bytes per second");
    bad("bs=1000", "bs: size '1000' must be a multiple of 512");
    bad("bs=2m", "bs: size '2m' must be a multiple of 512 bytes up to 1M");
    bad("bs=4k:0", "bs: weight '0'");
    bad("bs=4k:x", "bs: weight 'x'");
    bad("locality=1.5", "locality=1.5: must be a fraction from 0 to 1");
    bad("compress=-1", "compress=-1");
    bad("duration=0", "duration=0: must be a number of seconds");
    bad("count=0", "count=0: must be a number of records");
    bad("count=10,duration=5", "give duration= or count=, not both");
    bad("seed=abc", "seed=abc");
    bad("tags=-3", "tags=-3");
    bad("speed=3", "unknown key 'speed'");
    bad("disks=2,oops", "'oops' is not key=value");
    bad("size=4k,bs=64k", "smaller than the largest write");
}

static void gen_all(const agent_workload_t *w, uint64_t n, wire_entry_t *out, uint8_t **bufs, bool cached)
{
    agent_wl_gen_t gen = {0};
    char name[WIRE_MAX_NAME + 1];
    for (uint64_t s = 1; s <= n; s++) {
        bufs[s - 1] = tm_malloc(w->bs_max);
        agent_workload_record(w, cached ? &gen : NULL, s, &out[s - 1], bufs[s - 1], name);
        if (out[s - 1].kind == WIRE_R_TAG) {
            memcpy(bufs[s - 1], name, out[s - 1].length);
            out[s - 1].data = bufs[s - 1];
        }
    }
}

Test(workload, content_is_a_function_of_seed_and_seq)
{
    enum { N = 2000 };
    cr_assert_eq(agent_workload_parse("disks=3,size=8M,bs=4k:70,64k:30,locality=0.7,compress=0.5,count=2000,"
                                      "seed=42,tags=20",
                                      &wl, err, sizeof err),
                 0, "%s", err);
    static wire_entry_t a[N], b[N];
    static uint8_t *ab[N], *bb[N];
    gen_all(&wl, N, a, ab, true);
    gen_all(&wl, N, b, bb, false); /* no cache: each record computed alone */
    unsigned tags = 0, near = 0, disks[3] = {0};
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(a[i].kind, b[i].kind, "seq %u", i + 1);
        if (i < 3) {
            /* the disks start all zero: the stream opens with their SYNCED */
            cr_assert_eq(a[i].kind, WIRE_R_SYNCED, "seq %u", i + 1);
            cr_assert_eq(a[i].disk, i);
            cr_assert_eq(a[i].length, 0);
            continue;
        }
        cr_assert_eq(a[i].disk, b[i].disk, "seq %u", i + 1);
        cr_assert_eq(a[i].offset, b[i].offset, "seq %u", i + 1);
        cr_assert_eq(a[i].length, b[i].length, "seq %u", i + 1);
        cr_assert_eq(a[i].id, b[i].id, "seq %u", i + 1);
        cr_assert_eq(memcmp(a[i].data, b[i].data, a[i].length), 0, "seq %u", i + 1);
        if (a[i].kind == WIRE_R_TAG) {
            tags++;
            cr_assert_eq((i + 1) % 21, 0, "a tag after every 20 writes");
            continue;
        }
        cr_assert(a[i].length == 4096 || a[i].length == 65536);
        cr_assert_eq(a[i].offset % 512, 0);
        cr_assert_leq(a[i].offset + a[i].length, wl.size);
        cr_assert_lt(a[i].disk, 3);
        disks[a[i].disk]++;
        if (i > 0 && a[i - 1].kind == WIRE_R_WRITE && a[i].offset == a[i - 1].offset + a[i - 1].length)
            near++;
    }
    cr_assert_eq(tags, N / 21);
    cr_assert(disks[0] && disks[1] && disks[2], "every disk is written");
    cr_assert_gt(near, N / 2, "locality=0.7: most writes continue the previous one (%u)", near);

    /* another seed, other content */
    agent_workload_t w2 = wl;
    w2.seed = 43;
    wire_entry_t e;
    char name[WIRE_MAX_NAME + 1];
    uint8_t *buf = tm_malloc(wl.bs_max);
    agent_workload_record(&w2, NULL, 4, &e, buf, name);
    cr_assert(e.offset != a[3].offset || e.length != a[3].length || memcmp(buf, a[3].data, e.length) != 0);
    tm_free(buf);
    for (unsigned i = 0; i < N; i++)
        tm_free(ab[i]), tm_free(bb[i]);
}

Test(workload, compressibility_follows_the_spec)
{
    char name[WIRE_MAX_NAME + 1];
    wire_entry_t e;
    uint8_t *buf = tm_malloc(65536);
    cr_assert_eq(agent_workload_parse("bs=64k,compress=1,count=2", &wl, err, sizeof err), 0);
    agent_workload_record(&wl, NULL, 2, &e, buf, name);
    wire_buf_t b = {0};
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, true), 0);
    cr_assert_lt(b.len, 4096, "fully compressible: %zu bytes on the wire", b.len);
    wire_buf_reset(&b);
    cr_assert_eq(agent_workload_parse("bs=64k,compress=0,count=2", &wl, err, sizeof err), 0);
    agent_workload_record(&wl, NULL, 2, &e, buf, name);
    cr_assert_eq(wire_enc_records(&b, 1, &e, 1, true), 0);
    cr_assert_gt(b.len, 65536, "noise does not compress: %zu bytes", b.len);
    wire_buf_free(&b);
    tm_free(buf);
}
