/*
 * Journal helpers for the tests: asynchronous appends whose callbacks are
 * counted (each must run exactly once), and reading a whole journal back into
 * owned copies.
 */
#ifndef TMT_JNL_H
#define TMT_JNL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"

/* A set of in-flight appends to wait for. */
typedef struct tmt_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending; /* submitted, callback not run yet */
    unsigned acked;   /* callbacks with status 0 */
    unsigned failed;  /* callbacks with an error */
} tmt_group_t;

/* One append; the caller keeps it alive until its callback ran. */
typedef struct tmt_req {
    jnl_append_req_t req;
    tmt_group_t *group;
    int status;     /* the callback's status */
    unsigned calls; /* how many times the callback ran */
    uint64_t id;    /* the test's own tag */
} tmt_req_t;

void tmt_group_init(tmt_group_t *g);
void tmt_group_destroy(tmt_group_t *g);

/* jnl_append of one buffer through r; on 0 the group waits for it. */
int tmt_append(tmt_group_t *g, tmt_req_t *r, jnl_t *j, uint8_t type, const void *data, size_t len,
               unsigned flags);

/* The same with a gathered payload. */
int tmt_appendv(tmt_group_t *g, tmt_req_t *r, jnl_t *j, uint8_t type, const jnl_buf_t *bufs, unsigned nbufs,
                unsigned flags);

/* Wait until every submitted callback ran; false on timeout (ms). */
bool tmt_group_wait(tmt_group_t *g, int timeout_ms);

/* A record read back, owning its payload. */
typedef struct tmt_rec {
    uint64_t lsn;
    uint8_t type;
    jnl_pos_t pos;
    uint32_t stored_len;
    bool compressed;
    uint32_t len;
    uint8_t *data;
} tmt_rec_t;

/* Read from from_lsn to the durable end (-EAGAIN). Returns the count; *out is
 * an array to free with tmt_recs_free. Any other reader error fails the test. */
size_t tmt_read_all(jnl_t *j, uint64_t from_lsn, tmt_rec_t **out);
void tmt_recs_free(tmt_rec_t *recs, size_t n);

/* Open and assert success. */
jnl_t *tmt_open(const char *dir, const jnl_options_t *opts);

#endif
