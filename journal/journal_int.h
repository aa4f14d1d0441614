/*
 * Journal internals shared by the files of journal/; nothing outside
 * journal/ includes this.
 *
 * Locking: j->mu guards everything in struct jnl except the fields marked
 * "writer only", which only the writer thread touches, and the immutable
 * configuration set at open. Callbacks run with no lock held.
 */
#ifndef TM_JOURNAL_INT_H
#define TM_JOURNAL_INT_H

#include <pthread.h>

#include "journal/format.h"
#include "journal/journal.h"

/* A segment of the log, as the journal knows it. */
typedef struct jnl_seg {
    uint64_t seq;
    uint64_t first_lsn;
    uint64_t salt;
    uint64_t size; /* from the header */
    uint64_t end;  /* where durable records end (sealed: the successor's prev_end) */
} jnl_seg_t;

/* Records written by one write + fdatasync. */
typedef struct jnl_batch {
    struct jnl_batch *next;
    uint8_t *buf;
    size_t len, cap;
    uint64_t seq; /* segment, and offset of buf[0] in it */
    uint64_t off;
    uint64_t first_lsn, last_lsn;
    bool roll;          /* initialise segment `seq` with hdr first */
    jnl_seg_hdr_t hdr;
    jnl_append_req_t *reqs, **reqs_tail;
} jnl_batch_t;

struct jnl {
    char *dir;
    jnl_options_t opt;
    jnl_io_t io;
    uint64_t journal_id;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* the writer waits here */
    pthread_cond_t durable_cv; /* waiters for durability and recovery */

    jnl_seg_t *segs; /* ascending seq, contiguous */
    size_t nsegs, segs_cap;
    uint64_t *spares; /* ids of spare-<id>.jnl files */
    size_t nspares, spares_cap;
    uint64_t next_spare_id;

    /* Where the next record goes. */
    uint64_t next_lsn;
    uint64_t alloc_seq, alloc_off, alloc_size, alloc_salt;
    bool need_roll; /* the next record starts segment alloc_seq + 1 */
    jnl_batch_t *open;
    jnl_batch_t *ready, **ready_tail;
    jnl_batch_t *free_batches;
    uint64_t queued_bytes;

    uint64_t durable_lsn;
    int error; /* sticky failure; 0 if none */
    uint64_t last_retry_ns;
    bool retry_wanted;
    bool recover_requested;
    int recover_result;
    uint64_t recover_gen;
    bool closing, closed;

    pthread_t writer;
    bool writer_started;
    int cur_fd; /* writer only: the segment being written, or -1 */
    uint64_t cur_seq; /* writer only */

    /* statistics */
    uint64_t n_appends, n_batches, n_bytes;

    /* what recovery found */
    jnl_end_kind_t end_kind;
    jnl_pos_t end_pos;
    char end_reason[96];
    uint64_t torn_records;
};

/* io.c */
void jnl__io_resolve(jnl_io_t *out, const jnl_io_t *in);
int jnl__pread_full(const jnl_io_t *io, int fd, void *buf, size_t len, uint64_t off);
int jnl__pwrite_full(const jnl_io_t *io, int fd, const void *buf, size_t len, uint64_t off);
int jnl__fsync_dir(const jnl_io_t *io, const char *dir);
char *jnl__path(const char *dir, const char *fmt, uint64_t n);

/*
 * A read window over one segment file: keeps a stretch of it in memory so a
 * scan does few preads. Reads are clipped to `limit` (the file size, or the
 * durable end for live segments) so no byte past it is ever cached.
 */
typedef struct jnl_win {
    const jnl_io_t *io;
    int fd;
    uint64_t limit;
    uint8_t *buf;
    size_t cap;
    uint64_t start;
    size_t len;
} jnl_win_t;

void jnl__win_init(jnl_win_t *w, const jnl_io_t *io, int fd, uint64_t limit);
void jnl__win_free(jnl_win_t *w);
/* Make [off, off+want) available, clipped to limit. *p and *avail describe
 * what is there (avail may be less than want near the limit). */
int jnl__win_get(jnl_win_t *w, uint64_t off, size_t want, const uint8_t **p, size_t *avail);

/* Check the record at off against segment s. */
jnl_rec_verdict_t jnl__check_at(jnl_win_t *w, const jnl_seg_t *s, uint64_t off, uint64_t expect_lsn,
                                jnl_rec_hdr_t *h, const uint8_t **rec, int *err);


/* How the last segment ends at off, where the scan found its first invalid
 * record (verdict v, expected LSN expect; off at the limit means it is full). */
typedef enum { JNL__END_CLEAN, JNL__END_TORN, JNL__END_CORRUPT } jnl__end_t;
typedef struct jnl__end_info {
    jnl__end_t kind;
    const char *reason;  /* "end of segment" or the verdict's name */
    uint64_t later_off;  /* CORRUPT: where a durable record follows */
    uint64_t same_batch; /* TORN: valid-looking records of the unfinished batch */
} jnl__end_info_t;

int jnl__classify_end(jnl_win_t *w, const jnl_seg_t *s, uint64_t off, uint64_t expect, jnl_rec_verdict_t v,
                      jnl__end_info_t *out);

/* segment.c */
typedef struct jnl_seg_file {
    uint64_t seq;
    jnl_hdr_verdict_t verdict;
    jnl_seg_hdr_t hdr;
    uint64_t file_size;
} jnl_seg_file_t;

/* List seg-*.jnl (sorted by seq, headers read) and spare-*.jnl in dir. */
int jnl__list(const jnl_io_t *io, const char *dir, jnl_seg_file_t **segs, size_t *nsegs, uint64_t **spares,
              size_t *nspares);
/* Writer: make segment file `hdr->seq` ready (reuse, spare or new), write
 * its header; the caller syncs. Returns the fd or -errno. *dir_changed says
 * whether the directory needs an fsync. */
int jnl__seg_prepare(jnl_t *j, const jnl_seg_hdr_t *hdr, bool *dir_changed);
uint64_t jnl__disk_bytes(const char *dir);

/* recover.c */
int jnl__recover(jnl_t *j);

/* writer.c */
void *jnl__writer_main(void *arg);

#endif
