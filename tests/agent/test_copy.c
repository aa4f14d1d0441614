/*
 * The initial copy, end to end with the real binaries: a tap agent on an
 * image that already holds data sends it whole (all-zero chunks skipped)
 * while qemu-io writes to it, and the journal, applied in order onto a zero
 * image, gives the image byte for byte; the server says when the machine is
 * protected, keeps that over a restart, and a reconnecting agent of a
 * protected machine copies nothing. The replay agent's disks start all zero:
 * its stream opens with their SYNCED records.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "journal/journal.h"
#include "tests/agent/at.h"
#include "wire/msg.h"

#define WAIT_MS 60000
#define MIB (1u << 20)
#define IMG_SIZE (16u * MIB)
#define SEED 0x5eed1234u

TestSuite(copy, .init = at_setup, .fini = at_teardown, .timeout = 180);

/* What the journal says about one machine's disk 0. */
typedef struct applied {
    uint8_t *img;          /* the records applied in order onto zeros */
    uint64_t copy_first, copy_last; /* sequences of the first and last copy write */
    unsigned copy_chunks;  /* 1 MiB writes at 1 MiB boundaries: the copy's */
    uint64_t copy_bytes;
    bool chunk_sent[IMG_SIZE / MIB];
    uint64_t live_seq[8];  /* sequences of the other writes, in order */
    unsigned nlive;
    unsigned synced;       /* SYNCED records of disk 0 */
    uint64_t synced_seq;
    uint64_t records;
} applied_t;

/* Apply every type-1 batch of machine onto a zero image. */
static void apply_journal(const char *data, const char *machine, applied_t *a)
{
    memset(a, 0, sizeof *a);
    a->img = tm_calloc(1, IMG_SIZE);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/journal", data);
    jnl_options_t o = {.read_only = true};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    cr_assert_eq(rc, 0, "jnl_open %s: %s", dir, tm_strerror(rc));
    jnl_reader_t *r = NULL;
    cr_assert_eq(jnl_reader_open(j, 0, &r), 0);
    wire_records_t *recs = tm_malloc(sizeof *recs);
    uint8_t *scratch = tm_malloc(WIRE_MAX_BATCH_DATA);
    cr_assert(a->img && recs && scratch);
    jnl_record_t rec;
    while ((rc = jnl_reader_next(r, &rec)) == 0) {
        if (rec.type != INGEST_REC_BATCH)
            continue;
        ingest_batch_rec_t b;
        cr_assert_eq(ingest_rec_batch_parse(rec.data, rec.len, &b), 0);
        if (strcmp(b.machine, machine) != 0)
            continue;
        char reason[160];
        rc = wire_dec_records(b.body, b.body_len, recs, scratch, reason, sizeof reason);
        cr_assert_eq(rc, 0, "lsn %llu: %s", (unsigned long long)rec.lsn, reason);
        for (unsigned i = 0; i < recs->count; i++) {
            const wire_entry_t *e = &recs->entries[i];
            uint64_t seq = recs->first_seq + i;
            a->records++;
            if (e->kind == WIRE_R_SYNCED) {
                cr_assert_eq(e->disk, 0);
                a->synced++;
                a->synced_seq = seq;
                continue;
            }
            if (e->kind != WIRE_R_WRITE && e->kind != WIRE_R_ZERO && e->kind != WIRE_R_TRIM)
                continue;
            cr_assert_eq(e->disk, 0);
            cr_assert_leq(e->offset + e->length, IMG_SIZE);
            if (e->kind == WIRE_R_WRITE)
                memcpy(a->img + e->offset, e->data, e->length);
            else
                memset(a->img + e->offset, 0, e->length); /* a trim reads as zeros on the tap's file too */
            if (e->kind == WIRE_R_WRITE && e->length == MIB && e->offset % MIB == 0) {
                if (!a->copy_first)
                    a->copy_first = seq;
                a->copy_last = seq;
                a->copy_chunks++;
                a->copy_bytes += e->length;
                a->chunk_sent[e->offset / MIB] = true;
            } else if (a->nlive < 8) {
                a->live_seq[a->nlive++] = seq;
            }
        }
    }
    cr_assert_eq(rc, -EAGAIN, "reader: %s", tm_strerror(rc));
    tm_free(scratch);
    tm_free(recs);
    jnl_reader_close(r);
    jnl_destroy(j);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)(x | 1); /* never zero: a region with data is never mistaken for a hole */
    }
}

static uint8_t *read_file(const char *path, size_t n)
{
    uint8_t *p = tm_malloc(n);
    FILE *f = fopen(path, "rb");
    cr_assert(p && f, "%s", path);
    cr_assert_eq(fread(p, 1, n, f), n);
    fclose(f);
    return p;
}

/* The image: data in chunks 0 (whole), 3 (100 KiB inside), 6 and 7 (a
 * 2 MiB run) and 12 (its last sector); every other chunk all zero. */
static void make_image(const char *path)
{
    uint8_t *img = tm_calloc(1, IMG_SIZE);
    cr_assert_not_null(img);
    fill(img, MIB, SEED);
    fill(img + 3 * MIB + 4096, 100 << 10, SEED + 1);
    fill(img + 6 * MIB, 2 * MIB, SEED + 2);
    fill(img + 13 * MIB - 512, 512, SEED + 3);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(img, 1, IMG_SIZE, f), IMG_SIZE);
    fclose(f);
    tm_free(img);
}

static void start_tap(at_child_t *c, const char *addr, const char *secret, const char *img, const char *rate)
{
    static char disk_arg[PATH_MAX + 8];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    if (rate)
        at_spawn(c, (const char *[]){"agent", "tap", "--server", addr, "--machine", "vm1", "--secret-file", secret,
                                     "--disk", disk_arg, "--listen", "127.0.0.1:0", "--copy-rate", rate, NULL});
    else
        at_spawn(c, (const char *[]){"agent", "tap", "--server", addr, "--machine", "vm1", "--secret-file", secret,
                                     "--disk", disk_arg, "--listen", "127.0.0.1:0", NULL});
    cr_assert(at_wait(c, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", c->err);
}

static void nbd_url(const at_child_t *tap, char *url, size_t len)
{
    const char *p = strstr(tap->out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, len, "nbd://127.0.0.1:%d/d0", atoi(p));
}

static void stop(at_child_t *c)
{
    kill(c->pid, SIGTERM);
    cr_assert_eq(at_finish(c, WAIT_MS), 0, "stdout:\n%s\nstderr:\n%s", c->out, c->err);
}

Test(copy, tap_sends_the_disk_whole_with_live_writes_and_a_synced_machine_copies_nothing)
{
    const char *data = at_path("data"), *secret = at_path("secret"), *img = at_path("disk.img");
    char addr[64], addr2[64], url[128];
    at_child_t srv, tap, q, srv2, tap2, q2;
    make_image(img);
    at_machine_add(data, "vm1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    /* 4 MiB/s: the 16 chunks take about 4 s, so the client's writes land
     * while the copy is under way, some ahead of it and some behind it. */
    start_tap(&tap, addr, secret, img, "4M");
    nbd_url(&tap, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy started", WAIT_MS), "%s", tap.err);
    at_spawn(&q, (const char *[]){"qemu-io", "-f", "raw", url,
                                  "-c", "write -P 0x77 8k 64k",    /* chunk 0: the copy has been there */
                                  "-c", "write -P 0x88 14M 128k",  /* chunk 14, all zero until now */
                                  "-c", "write -z 6M 64k",         /* zeroes inside the 2 MiB run */
                                  "-c", "write -P 0x99 3M 4k",     /* next to chunk 3's data */
                                  "-c", "write -P 0x66 15M 512",   /* the last chunk */
                                  "-c", "flush", NULL});
    cr_assert_eq(at_finish(&q, WAIT_MS), 0, "qemu-io:\n%s\n%s", q.out, q.err);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    cr_assert(at_wait(&srv, true, "ingest: machine vm1 is protected: initial copy of 1 disk(s) complete", WAIT_MS),
              "%s", srv.err);
    stop(&tap);
    stop(&srv);

    applied_t a;
    apply_journal(data, "vm1", &a);
    uint8_t *want = read_file(img, IMG_SIZE);
    for (size_t i = 0; i < IMG_SIZE; i++)
        cr_assert_eq(a.img[i], want[i], "seed %#x: byte %zu: journal gives %#x, the image holds %#x", SEED, i,
                     a.img[i], want[i]);
    /* Only the chunks with data travelled: 0, 3, 6, 7, 12, and 14 and 15
     * once the client wrote there ahead of the copy. */
    static const unsigned sent[] = {0, 3, 6, 7, 12};
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++)
        cr_assert(a.chunk_sent[sent[i]], "chunk %u has data but was not sent", sent[i]);
    for (unsigned c = 0; c < IMG_SIZE / MIB; c++)
        if (a.chunk_sent[c])
            cr_assert(c == 0 || c == 3 || c == 6 || c == 7 || c == 12 || c == 14 || c == 15,
                      "chunk %u was all zero but was sent", c);
    cr_assert_leq(a.copy_bytes, 7ull * MIB, "%llu copy bytes", (unsigned long long)a.copy_bytes);
    cr_assert_eq(a.synced, 1);
    cr_assert_gt(a.synced_seq, a.copy_last, "SYNCED comes after the last chunk");
    cr_assert_eq(a.nlive, 5, "the five client writes (%u)", a.nlive);
    /* during the copy: some client write lies between its first and last chunk */
    bool during = false;
    for (unsigned i = 0; i < a.nlive; i++)
        during |= a.live_seq[i] > a.copy_first && a.live_seq[i] < a.copy_last;
    cr_assert(during, "no client write landed during the copy (chunks %llu..%llu)",
              (unsigned long long)a.copy_first, (unsigned long long)a.copy_last);
    uint64_t records = a.records;
    unsigned chunks = a.copy_chunks;
    tm_free(a.img);

    /* A restarted server still knows the machine is protected; a new agent
     * process is told so and sends changes only. */
    at_serve(&srv2, data, "127.0.0.1:0", addr2);
    cr_assert(strstr(srv2.out, "machine:     vm1: protected (1 of 1 disk copied)"), "%s", srv2.out);
    start_tap(&tap2, addr2, secret, img, NULL);
    cr_assert(at_wait(&tap2, true, "stream resumes at sequence", WAIT_MS), "%s", tap2.err);
    nbd_url(&tap2, url, sizeof url);
    at_spawn(&q2, (const char *[]){"qemu-io", "-f", "raw", url, "-c", "write -P 0x55 5M 4k", "-c", "flush", NULL});
    cr_assert_eq(at_finish(&q2, WAIT_MS), 0, "qemu-io:\n%s\n%s", q2.out, q2.err);
    stop(&tap2);
    stop(&srv2);
    cr_assert_null(strstr(tap2.err, "initial copy"), "a protected machine's agent copied: %s", tap2.err);
    apply_journal(data, "vm1", &a);
    cr_assert_eq(a.copy_chunks, chunks, "no chunk sent again");
    cr_assert_eq(a.synced, 1);
    cr_assert_gt(a.records, records, "the new write is in the journal");
    want = (tm_free(want), read_file(img, IMG_SIZE));
    cr_assert_eq(memcmp(a.img, want, IMG_SIZE), 0, "the image after the new write");
    tm_free(a.img);
    tm_free(want);
    at_child_free(&q);
    at_child_free(&q2);
    at_child_free(&tap);
    at_child_free(&tap2);
    at_child_free(&srv);
    at_child_free(&srv2);
}

Test(copy, replay_disks_are_synced_at_once)
{
    const char *data = at_path("data"), *secret = at_path("secret");
    char addr[64];
    at_child_t srv, ag;
    at_machine_add(data, "web1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    cr_assert(strstr(srv.out, "machines:    none streamed yet"), "%s", srv.out);
    at_spawn(&ag, (const char *[]){"agent", "replay", "--server", addr, "--machine", "web1", "--secret-file", secret,
                                   "--workload", "disks=2,size=8M,count=40,seed=3", NULL});
    cr_assert_eq(at_finish(&ag, WAIT_MS), 0, "agent:\n%s\n%s", ag.out, ag.err);
    cr_assert(at_wait(&srv, true, "ingest: machine web1 is protected: initial copy of 2 disk(s) complete", WAIT_MS),
              "%s", srv.err);
    cr_assert(strstr(srv.err, "machine web1: initial copy of disk disk0 complete (1 of 2 disks)"), "%s", srv.err);
    stop(&srv);
    at_child_free(&ag);
    at_child_free(&srv);
}
