/*
 * Helpers for the ingest suite: the real `tidemark serve` started on a
 * scratch data folder with --agents 127.0.0.1:0 (the port read back from its
 * output), machines registered with the real `tidemark machine add`, a small
 * blocking agent written with plain sockets and the wire codec, and a reader
 * of what ended up in the journal.
 *
 * Every wait is on an event with a bounded poll (ITA_WAIT_MS); a test that
 * waits longer fails rather than hangs.
 */
#ifndef ITA_H
#define ITA_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/cli/helpers.h"
#include "wire/msg.h"
#include "wire/wire.h"

#define ITA_WAIT_MS 20000

typedef struct ita_server {
    tc_child_t c;
    char data[PATH_MAX];
    unsigned port;     /* agents */
    unsigned api_port; /* the HTTP API */
} ita_server_t;

/* Start serve on data (created), wait for "serving", read the port. */
void ita_start(ita_server_t *s, const char *data, const char *const *extra);
/* SIGTERM and wait for exit 0. */
void ita_stop(ita_server_t *s);
/* SIGKILL and reap. */
void ita_kill(ita_server_t *s);

/* `tidemark machine add name --data data`; the secret's 32 bytes into secret. */
void ita_add_machine(const char *data, const char *name, uint8_t secret[32]);

/* ---- the agent ---- */

typedef struct ita_agent {
    int fd;
    wire_decoder_t dec;
    uint8_t in[65536];
    size_t in_off, in_len;
    bool eof;
    /* the last frame read */
    uint16_t type;
    uint8_t *body;
    size_t body_len;
} ita_agent_t;

void ita_connect(ita_agent_t *a, unsigned port);
void ita_close(ita_agent_t *a);
/* Write all bytes; returns 0 or errno (EPIPE/ECONNRESET are fine after an error). */
int ita_send_raw(ita_agent_t *a, const void *p, size_t n);
void ita_send(ita_agent_t *a, const wire_buf_t *b);
/* Next frame: true, or false at EOF (connection closed by the server). */
bool ita_recv(ita_agent_t *a);

/* HELLO with these disks; returns the CHALLENGE's nonce in nonce. */
void ita_hello(ita_agent_t *a, const char *machine, const wire_disk_t *disks, uint16_t ndisks,
               uint8_t nonce[WIRE_NONCE_LEN]);
void ita_mac(const uint8_t secret[32], const uint8_t nonce[WIRE_NONCE_LEN], const char *machine,
             uint8_t mac[WIRE_MAC_LEN]);
/* The whole handshake; returns WELCOME's next_seq. */
uint64_t ita_handshake(ita_agent_t *a, const char *machine, const uint8_t secret[32], const wire_disk_t *disks,
                       uint16_t ndisks, wire_welcome_t *w);
/* Connect and handshake, again and again while the answer is `busy`: the
 * server may not have seen the previous connection's end yet (an agent
 * retries the same way). */
uint64_t ita_reconnect(ita_agent_t *a, unsigned port, const char *machine, const uint8_t secret[32],
                       const wire_disk_t *disks, uint16_t ndisks, wire_welcome_t *w);
/* Read until ERROR; assert its code, then that the server closes. */
void ita_expect_error(ita_agent_t *a, int code);
/* Read until an ACK >= seq; returns the ACK's value. */
uint64_t ita_wait_ack(ita_agent_t *a, uint64_t seq);

/* A seeded batch: count records from first_seq on disk 0 of disk_size,
 * writes mostly, some zero/trim/flush/tag. b gets the frame. */
void ita_batch(wire_buf_t *b, uint64_t first_seq, uint16_t count, uint64_t disk_size, uint64_t seed, bool compress);

/* ---- the journal ---- */

typedef struct ita_batch_rec {
    char machine[WIRE_MAX_NAME + 1];
    uint64_t first_seq;
    uint16_t count;
    uint8_t *body;
    size_t body_len;
} ita_batch_rec_t;

typedef struct ita_journal {
    ita_batch_rec_t *b;
    size_t nb;
    unsigned disks_records;
    char disks_machine[8][WIRE_MAX_NAME + 1];
} ita_journal_t;

/* Read every ingest record of the journal in data/journal (server stopped). */
void ita_read_journal(const char *data, ita_journal_t *j);
void ita_journal_free(ita_journal_t *j);
/* How many batches of machine the journal holds. */
size_t ita_count_batches(const ita_journal_t *j, const char *machine);

#endif
