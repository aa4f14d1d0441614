/*
 * Helpers for the target tests: a journal holding a seeded workload of
 * machine web1 (tests/points/pm.h, with its reference model), the points
 * stage over it, and the NBD exports on a loop of their own thread; then
 * real clients (tests/nbd/nbdt.h) and comparisons with the model.
 *
 * Threads: the exports' loop runs on its thread and everything of them
 * happens there; the test thread talks to them over sockets only, and
 * calls pts_* directly (they are thread-safe). Criterion runs each test in
 * its own process.
 */
#ifndef TT_H
#define TT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "nbdt.h"
#include "pm.h"
#include "points/points.h"
#include "target/export.h"

#define TT_STEP_NS 100000000ull /* batches 100 ms apart */

typedef struct tt {
    char dir[PATH_MAX];
    char jdir[PATH_MAX + 16];
    char idir[PATH_MAX + 16];
    char bdir[PATH_MAX + 16];
    jnl_t *j;
    pts_t *p;
    pm_t m;
    /* the exports */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    tgt_exports_t *x;
    int port;
    bool running;
    /* calls on the loop's thread (tt_test_start, tt_test_cleanup, tt_failover_*) */
    uv_async_t call;
    uv_sem_t call_done;
    void (*call_fn)(struct tt *t);
    const char *call_machine, *call_selector;
    uint64_t call_in; /* a failover's point */
    bool call_flag;   /* keep, remove */
    int call_rc;
    uint64_t call_seq, call_seq2;
    char call_msg[1024];
    /* a failover's commit, ended by its callback */
    uv_sem_t commit_done;
    int commit_rc;
    char commit_msg[1024];
    unsigned reopens; /* tt_reopen(wipe) */
    /* tt_init_ex's, kept for tt_reopen */
    uint64_t segment_size;
    bool retire;
} tt_t;

/* The seed (TIDEMARK_TARGET_SEED, else def), printed. */
uint64_t tt_seed(uint64_t def);

/* A journal with web1's disks and nbatches batches (at most max_entries
 * entries each), received from ten minutes ago on, processed (pts_sync),
 * with a replica base folder and no automatic retention. */
void tt_init(tt_t *t, const char *tag, uint64_t seed, unsigned nbatches, unsigned max_entries);
/* The same with journal segments of segment_size bytes (0: the default;
 * records up to segment_size - 8 KiB), and retention retiring the journal
 * segments it folded when retire. */
void tt_init_ex(tt_t *t, const char *tag, uint64_t seed, unsigned nbatches, unsigned max_entries,
                uint64_t segment_size, bool retire);
/* Start the exports on 127.0.0.1:0 on their own thread. */
void tt_start(tt_t *t);
/* Stop them (from their thread), join, assert uv_loop_close() == 0. */
void tt_stop(tt_t *t);
/* tt_stop if running, then close everything and remove the folder. */
void tt_fini(tt_t *t);

/* "nbd://127.0.0.1:PORT/NAME", NAME percent-encoded where a URI needs it;
 * rotating buffer. */
const char *tt_uri(const tt_t *t, const char *name);
/* dir/rel; rotating buffer. */
const char *tt_path(const tt_t *t, const char *rel);

/* The point a selector names now (pts_resolve), asserting it resolves. */
uint64_t tt_seq_of(tt_t *t, const char *selector);
/* "@2026-...Z" for batch b's time plus half a step: names its last seq. */
void tt_time_selector(const tt_t *t, size_t b, char *out, size_t len);
/* A catalogued point in the middle of the catalog (not the newest). */
uint64_t tt_middle_point(tt_t *t);

/* Assert the file holds disk `disk` of web1 as of seq, byte for byte. */
void tt_assert_disk_file(const tt_t *t, const char *path, unsigned disk, uint64_t seq);
/* qemu-img convert the export to dir/out, assert success and the model. */
void tt_convert_and_check(tt_t *t, const char *name, unsigned disk, uint64_t seq, const char *out);

/* Test failovers, called from the test thread, run on the loop's:
 * tgt_test_start(machine, selector, overlays in dir/test) and its callback
 * (waited for): its status, the point in *seq, the message in msg. */
int tt_test_start(tt_t *t, const char *machine, const char *selector, uint64_t *seq, char *msg, size_t len);
int tt_test_cleanup(tt_t *t, const char *machine, char *msg, size_t len);

/* Failovers, the same way, with their overlays in dir/failover. */
int tt_failover_start(tt_t *t, const char *machine, uint64_t seq, bool keep, char *msg, size_t len);
int tt_failover_stop(tt_t *t, const char *machine, bool remove, char *msg, size_t len);
int tt_failover_point(tt_t *t, const char *machine, uint64_t *seq);
int tt_failover_progress(tt_t *t, const char *machine, uint64_t *done, uint64_t *total);
/* tgt_failover_commit's return (not waiting for its callback: when 0,
 * tt_failover_commit_wait gives the callback's status and message). With
 * then_stop, tgt_failover_stop(remove) follows in the same turn of the
 * loop, before the commit can have finished; its return in *stop_rc. */
int tt_failover_commit(tt_t *t, const char *machine, bool then_stop, int *stop_rc, char *msg, size_t len);
int tt_failover_commit_wait(tt_t *t, char *msg, size_t len);

/* With the exports stopped: close the journal and the points stage and open
 * them again (a restart of the appliance); or, wipe, open a new, empty
 * journal and index in new folders instead (the machine's points gone). */
void tt_reopen(tt_t *t, bool wipe);

/* Raw client, after nbdt_handshake(fd, FIXED_NEWSTYLE | NO_ZEROES): NBD_OPT_GO name; returns the final reply type
 * (NBD_REP_ACK on success, else the error) and its message (msg, len). */
uint32_t tt_go(int fd, const char *name, uint64_t *size, uint16_t *tflags, char *msg, size_t len);

#endif
