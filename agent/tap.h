/*
 * `tidemark agent tap`: each local raw image served over NBD (the nbd
 * module, file backend underneath); every WRITE, TRIM and WRITE_ZEROES a
 * client makes is applied to the file and then appended to the stream, in
 * completion order, before the client gets its reply. A FLUSH (and a FUA
 * write) is answered only after the local fdatasync and the server's ACK of
 * every record appended before it: a client's flush means durable at the
 * appliance. When the stream is full new writes wait; none is dropped.
 *
 * A disk the appliance holds no full copy of (its WELCOME says so) is sent
 * whole first, through the same ordered queue as the clients' writes, while
 * they go on: its initial copy (all-zero chunks skipped, then a SYNCED
 * record). tap.c explains why a write and a copy chunk cannot be reordered.
 *
 * A disk the appliance holds but whose image this agent cannot vouch for
 * (no clean-shutdown marker beside it, agent/clean.h: a previous agent was
 * killed and its unacknowledged writes are lost) is resynced: the
 * appliance's block sums are compared with the image, in stream order, and
 * only the differing blocks are sent (tap.c, "The resync"). A clean stop
 * (every record acknowledged) writes the markers.
 *
 * An app tag the appliance asks for is a quiesce (agent/quiesce.h): the
 * pre-script, then new WRITE, TRIM and WRITE_ZEROES requests are held (not
 * applied, not failed) until every one accepted before is in the stream, the
 * tag is appended, the post-script has run; then they go on in order.
 * FLUSH is never held: it covers only writes that completed before it, and
 * a held write has not.
 *
 * A STOP from the appliance (a planned failover) refuses new WRITE, TRIM
 * and WRITE_ZEROES requests with EPERM; once every one accepted before is
 * in the stream, a crash tag with the STOP's id and name is appended (the
 * final tag) and the agent goes on sending until all is acknowledged,
 * connected and stopped, until a RESUME (tap.c, "The STOP").
 */
#ifndef TM_AGENT_TAP_H
#define TM_AGENT_TAP_H

#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"

typedef struct agent_tap_disk {
    char name[WIRE_MAX_NAME + 1]; /* the export name and the disk's name in the HELLO */
    const char *path;             /* a raw image file or block device */
} agent_tap_disk_t;

typedef struct agent_tap_opts {
    const char *server;
    const char *machine;
    const uint8_t *secret;        /* AGENT_SECRET_LEN bytes */
    const char *listen;           /* NBD address, HOST:PORT (port 0: any) */
    const agent_tap_disk_t *disks;
    unsigned ndisks;
    size_t queue_bytes;           /* the stream's bound; 0 default */
    uint64_t copy_rate;           /* initial copy: bytes/s read from the disks; 0 unlimited */
    const char *pre_script;       /* app tags: run before holding writes (agent/quiesce.h); NULL none */
    const char *post_script;      /* app tags: run after the tag, before releasing writes; NULL none */
    unsigned script_timeout_ms;   /* each script's time limit; 0: AGENT_SCRIPT_TIMEOUT_MS */
} agent_tap_opts_t;

/* Serve until SIGINT/SIGTERM, then stop taking requests and wait for the
 * server to acknowledge what is held, and write the clean-shutdown markers
 * (a second signal ends at once, without them). Prints
 * "tap: listening on HOST:PORT" on stdout once serving. Returns 0 when
 * everything was acknowledged, 1 on a failure, 2 for bad disks. */
int agent_tap_run(const agent_tap_opts_t *o);

#endif
