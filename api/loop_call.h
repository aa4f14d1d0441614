/*
 * Calls from a job's thread into the event loop, waiting for their end.
 *
 * Failover jobs are sequences of steps, some of which must run on the
 * loop (the NBD exports, ingest's agents) and some of which wait long
 * (processing, an agent's drain). Written as a thread that calls into the
 * loop and waits, a job reads top to bottom; written as loop callbacks it
 * would be a state machine per step.
 *
 * A call runs fn(call, arg) on the loop; fn ends it with api_call_done,
 * at once or later from a callback of its own on the loop. The caller
 * waits for that status.
 *
 * Shutdown: api_loopq_close (on the loop) makes every caller waiting or yet
 * to call return -ESHUTDOWN at once, so a job thread can be joined from the
 * loop; a call already running on the loop may still end later (its
 * callback then only frees it).
 */
#ifndef TM_API_LOOP_CALL_H
#define TM_API_LOOP_CALL_H

#include <uv.h>

typedef struct api_loopq api_loopq_t;
typedef struct api_call api_call_t;

typedef void (*api_call_fn)(api_call_t *c, void *arg);

/* On the loop's thread. 0 or a negative error. */
int api_loopq_new(uv_loop_t *loop, api_loopq_t **out);
/* On the loop's thread; NULL ok. q is freed once the last call ends. */
void api_loopq_close(api_loopq_t *q);

/* From any thread but the loop's: run fn(c, arg) on the loop and wait for
 * api_call_done(c, status); returns status, or -ESHUTDOWN. */
int api_loop_call(api_loopq_t *q, api_call_fn fn, void *arg);
/* The same, with the call's message (api_call_done_msg) copied into msg
 * (len bytes; "" when none). A fn that ends its call later, from a
 * callback of its own, must say why through the call and not through arg:
 * after a shutdown the caller has returned and arg may be gone. */
#define API_CALL_MSG 512u
int api_loop_call_msg(api_loopq_t *q, api_call_fn fn, void *arg, char *msg, size_t len);
/* On the loop: the call's end. Exactly once per call. */
void api_call_done(api_call_t *c, int status);
/* The same with a sentence for the caller (copied; NULL: none). */
void api_call_done_msg(api_call_t *c, int status, const char *msg);

#endif
