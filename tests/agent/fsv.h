/*
 * A scripted appliance for the agent's tests: a thread in the test process
 * that speaks the server side of the agent protocol with the wire codec
 * (CHALLENGE, WELCOME, ACK; any AUTH is taken), keeps every record the agent
 * sends, acknowledges each batch at once, and sends what the test asks for
 * (TAG_REQUEST, STOP, RESUME, the frames of a group round), and keeps the
 * PREPARED answers. For what the real server cannot be made to do from a
 * test: ask at a chosen moment, and ask what the real one would refuse
 * before the agent sees it (a second round while one is open, a round while
 * stopped). RESYNC_REQUEST is never answered (the resync stays open).
 *
 * One agent connection at a time; a reconnecting agent is welcomed at one
 * past the last record kept. WELCOME says every disk is synced, so a tap
 * agent starts without an initial copy.
 */
#ifndef TM_TESTS_AGENT_FSV_H
#define TM_TESTS_AGENT_FSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/msg.h"

/* One record as kept: what the tests look at. */
typedef struct fsv_rec {
    uint64_t seq;
    uint8_t kind;     /* WIRE_R_* */
    uint8_t tag_kind; /* tags */
    uint16_t disk;
    uint64_t offset;
    uint32_t length;
    uint64_t id;
    char name[WIRE_MAX_NAME + 1]; /* tags */
    uint8_t fill;     /* writes: the first byte */
    bool uniform;     /* writes: every byte equals fill */
} fsv_rec_t;

typedef struct fsv fsv_t;

/* Listen on 127.0.0.1:0 and serve from a thread. */
fsv_t *fsv_start(void);
unsigned fsv_port(const fsv_t *s);
/* "127.0.0.1:PORT" in a static buffer. */
const char *fsv_addr(const fsv_t *s);

/* Wait (bounded) until an agent is streaming; false on timeout. */
bool fsv_wait_connected(fsv_t *s, int timeout_ms);
/* Send TAG_REQUEST on the live connection (asserts there is one). */
void fsv_tag(fsv_t *s, uint8_t kind, uint64_t id, const char *name);

/* A PREPARED as kept: records is how many records were kept when it came
 * (the agent sends PREPARED after the records before its hold). */
typedef struct fsv_prepared {
    uint64_t round;
    bool held;
    uint64_t seq;
    size_t records;
    char reason[WIRE_MAX_TEXT + 1];
} fsv_prepared_t;

/* Group round frames, STOP and RESUME on the live connection (asserts
 * there is one). */
void fsv_group_prepare(fsv_t *s, uint64_t round, uint8_t kind, uint32_t hold_ms, const char *name);
void fsv_group_decide(fsv_t *s, uint64_t round, bool commit);
void fsv_stop_agent(fsv_t *s, uint64_t id, const char *name);
void fsv_resume_agent(fsv_t *s);
/* Wait (bounded) for the first PREPARED of round; false on timeout. */
bool fsv_wait_prepared(fsv_t *s, uint64_t round, int timeout_ms, fsv_prepared_t *out);
unsigned fsv_prepared_count(fsv_t *s, uint64_t round);
/* End the agent's connection (it reconnects); sessions welcomed so far. */
void fsv_drop_agent(fsv_t *s);
unsigned fsv_sessions(fsv_t *s);
/* Wait (bounded) until n sessions were welcomed and one streams now. */
bool fsv_wait_sessions(fsv_t *s, unsigned n, int timeout_ms);

/* Wait (bounded) until pred is true of the records kept so far. */
bool fsv_wait(fsv_t *s, bool (*pred)(const fsv_rec_t *r, size_t n, void *arg), void *arg, int timeout_ms);
/* Wait until at least n records are kept. */
bool fsv_wait_count(fsv_t *s, size_t n, int timeout_ms);
/* A copy of the records kept (tm_free it); their number into *n. */
fsv_rec_t *fsv_records(fsv_t *s, size_t *n);

/* Stop the thread, close everything, free s. */
void fsv_stop(fsv_t *s);

#endif
