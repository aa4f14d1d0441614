/*
 * What the failover jobs do on the loop (the NBD exports, the agents),
 * wrapped as calls that a job's thread makes and waits for (loop_call.h).
 * Each returns 0 or a negative error, -ESHUTDOWN when the appliance is
 * stopping; err (when given) gets a sentence.
 */
#ifndef TM_API_FO_LOOP_H
#define TM_API_FO_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/v1.h"

/* STOP to the machine's agent, with a final tag (*tag_id gets its id;
 * its name is name). */
int fo_stop_agent(api_v1_t *a, const char *machine, const char *name, const char *reason, uint64_t *tag_id);
int fo_resume_agent(api_v1_t *a, const char *machine);
/* Replication of the machine ends for good (a commit). */
int fo_retire_agent(api_v1_t *a, const char *machine, const char *reason);

/* Serve the machine's disks writable at seq (tgt_failover_start). */
int fo_serve(api_v1_t *a, const char *machine, uint64_t seq, char *err, size_t errlen);
/* Stop serving them; remove: their overlays too. TM_ENOTFOUND: none. */
int fo_unserve(api_v1_t *a, const char *machine, bool remove, char *err, size_t errlen);
/* The point the machine's failover session serves (0: consolidated), or
 * TM_ENOTFOUND. */
int fo_session_point(api_v1_t *a, const char *machine, uint64_t *seq);

/* Consolidate the session's overlays (tgt_failover_commit), reporting
 * progress(arg, done, total) about four times a second; cancel is not
 * possible. */
int fo_consolidate(api_v1_t *a, const char *machine, void (*progress)(void *arg, uint64_t done, uint64_t total),
                   void *arg, char *err, size_t errlen);

/* NBD export names and URIs of the machine's disks with suffix (a new
 * JSON array: [{"disk", "name", "uri"}]). */
json_t *fo_exports_json(api_v1_t *a, const char *machine, const char *suffix);

#endif
