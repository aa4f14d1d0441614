/*
 * The failover jobs of POST /v1/jobs (architecture.md, "Failover flows";
 * docs/api.md, "Failover jobs"): failover, planned-failover, change-point
 * and commit. Each is a job over one or more machines, on a thread of its
 * own (jobs.h, api_jobs_run), calling into the loop for the NBD exports
 * and the agents (loop_call.h) and waiting on the points stage.
 *
 * What a failover leaves is kept in the index (pts_failover_set,
 * pts_commit_machine) and in the overlay files under DATA/failover/, so
 * `tidemark serve` serves a failed-over machine's disks again after a
 * restart, and refuses a committed machine's agent.
 *
 * Steps, for each machine:
 *   failover, planned-failover:
 *     prerequisites  the machine is known, replicating, not failed over
 *                    or committed; the NBD exports run
 *     shutdown       STOP to its agent (no new writes; what it holds is
 *                    sent, then a tag); wait for the tag to be processed.
 *                    planned-failover: must succeed (else the machine
 *                    fails and its agent is resumed). failover: only with
 *                    the option "shutdown", and the failover goes on when
 *                    it fails
 *     failover       the point: the shutdown tag's (planned), `latest`
 *                    (process everything received, cut a point there), or
 *                    the selector resolved
 *     start          record the failover, serve MACHINE/DISK@failover
 *                    (writable, over the point), and write raw images when
 *                    "out" is given
 *   change-point:    prerequisites (failed over, not committed), failover
 *                    (the new point), start (the exports switch over; what
 *                    was written to the failed-over disks is dropped)
 *   commit:          prerequisites (failed over), consolidate (the
 *                    overlays become whole disks that need no point),
 *                    stop-replication (the agent is refused from now on),
 *                    delete-points (every point and extent of it; its
 *                    journal space is released)
 *
 * A job over several machines goes on with the others when one fails. A
 * failover or planned-failover can be cancelled until it ends: what it did
 * is undone (exports, overlays, the record; a stopped agent is resumed),
 * and the machine replicates as before.
 */
#ifndef TM_API_FAILOVER_H
#define TM_API_FAILOVER_H

#include <jansson.h>

#include "api/http.h"
#include "api/v1.h"

/* POST /v1/jobs for one of the four actions: check the body, start the
 * job, reply 201 with it (or an error). */
void api_failover_post(api_v1_t *a, tm_http_req_t *req, json_t *body, const char *action);

/* The failover actions. */
bool api_failover_action(const char *action);

#endif
