/*
 * Helpers for the NBD server tests: a server on its own thread and loop
 * (file backend over temporary images, or any backend), real clients run as
 * child processes (qemu-io, qemu-img, nbdinfo, nbdcopy) and waited for with
 * waitpid, and a raw blocking TCP client for the bytes no real client sends.
 *
 * Threads: the server's loop runs on a thread of its own and everything of
 * the server happens there; the test thread only talks to it over sockets,
 * and reads the backend's state after nbdt_stop() has joined that thread.
 * Criterion runs each test in its own process, so all state is per test.
 */
#ifndef NBDT_H
#define NBDT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "nbd/nbd.h"
#include "nbd/nbd_file.h"
#include "nbd/nbd_int.h"
#include "support/tmt.h"

#define NBDT_MAX_EXPORTS 16
/* Every wait is on an event; this only bounds a raw socket read so that a
 * server that never answers fails the test instead of hanging it. */
#define NBDT_IO_TIMEOUT_S 30

typedef struct nbdt_server {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    bool running;
    bool stopped;
    nbd_server_t *srv;
    nbd_file_backend_t *fb;
    const nbd_backend_ops_t *ops; /* nbd_file_ops unless nbdt_start_with() */
    void *backend;
    int port;
    char dir[PATH_MAX];
    unsigned nimages;
    char images[NBDT_MAX_EXPORTS][PATH_MAX];
    nbd_server_stats_t stats; /* copied just before the server closes */
    /* Optional: runs on the server's thread right before nbd_server_close(). */
    void (*before_close)(void *backend);
} nbdt_server_t;

/* Make the temp folder, the loop and a file backend; ignore SIGPIPE; count
 * tm_malloc allocations from here on (nbdt_stop asserts none is left). */
void nbdt_init(nbdt_server_t *t, const char *tag);

/* Create a size-byte image (seed 0: zeroes, else seeded noise), export it as
 * name; returns its path (stable for the test). */
const char *nbdt_image(nbdt_server_t *t, const char *name, uint64_t size, uint64_t seed, bool read_only);

/* Listen on 127.0.0.1:0 and run the loop on a thread. */
void nbdt_start(nbdt_server_t *t);
/* The same over another backend (which then lives on the server's thread). */
void nbdt_start_with(nbdt_server_t *t, const nbd_backend_ops_t *ops, void *backend);

/* Close the server from its own thread, join it, assert uv_loop_close() == 0,
 * free the file backend, assert every tm_malloc allocation since nbdt_init()
 * was freed, and remove the folder. Only the first call acts. */
void nbdt_stop(nbdt_server_t *t);

/* "nbd://127.0.0.1:PORT/NAME" (NULL name: no path), in a rotating buffer. */
const char *nbdt_uri(const nbdt_server_t *t, const char *name);
/* dir/rel, in a rotating buffer. */
const char *nbdt_path(const nbdt_server_t *t, const char *rel);

/* ---- child processes ------------------------------------------------------ */

typedef struct nbdt_proc {
    pid_t pid;
    int fd; /* stdout and stderr together */
} nbdt_proc_t;

/* Start argv[0] (looked up in PATH) with stdin on /dev/null. */
void nbdt_spawn(nbdt_proc_t *p, const char *const argv[]);
/* Read its output to the end (kept up to cap - 1 bytes, NUL-terminated), reap
 * it; the exit code, or 128 + the signal. */
int nbdt_wait(nbdt_proc_t *p, char *out, size_t cap);
int nbdt_run(char *out, size_t cap, const char *const argv[]);

#define NBDT_RUN(out, ...) nbdt_run((out), sizeof(out), (const char *const[]){__VA_ARGS__, NULL})

/* Fail the test with a hint when a client program is not installed. */
void nbdt_need(const char *program, const char *package);

/* qemu-io reads 4 KiB of name and exits 0: the server still serves. */
void nbdt_assert_serving(const nbdt_server_t *t, const char *name);

/* ---- files ----------------------------------------------------------------- */

bool nbdt_files_equal(const char *a, const char *b);
/* True when len bytes at off of path all equal byte. */
bool nbdt_file_all(const char *path, uint64_t off, size_t len, uint8_t byte);
/* Expected bytes of an image made with seed (seed 0: zeroes). */
void nbdt_expected(uint8_t *buf, uint64_t off, size_t len, uint64_t size, uint64_t seed);

/* ---- raw client ------------------------------------------------------------ */

/* Connect to 127.0.0.1:port, blocking, with NBDT_IO_TIMEOUT_S guards. */
int nbdt_connect(int port);
/* The socket's own port, to name it in expected log lines. */
int nbdt_local_port(int fd);
void nbdt_send(int fd, const void *p, size_t n);
/* false on EOF or a reset before n bytes. */
bool nbdt_recv(int fd, void *p, size_t n);
/* True when the server closed the connection (after draining nothing else). */
bool nbdt_at_eof(int fd);

/* Read and check the greeting, send the client flags. */
void nbdt_handshake(int fd, uint32_t client_flags);
void nbdt_send_opt(int fd, uint32_t opt, const void *data, uint32_t len);

typedef struct nbdt_opt_reply {
    uint32_t opt;
    uint32_t type;
    uint32_t len;
    uint8_t data[8192];
} nbdt_opt_reply_t;

/* One option reply (asserts its magic and that it fits). false on EOF. */
bool nbdt_recv_opt_reply(int fd, nbdt_opt_reply_t *r);
/* OPT_GO/INFO data for name with the given info requests. Returns its length. */
size_t nbdt_go_data(uint8_t *out, const char *name, const uint16_t *infos, uint16_t ninfo);
/* Handshake with NO_ZEROES and NBD_OPT_GO to name; asserts success. */
uint16_t nbdt_go(int fd, const char *name, uint64_t *size);
/* nbdt_connect + nbdt_go. */
int nbdt_open(int port, const char *name, uint64_t *size, uint16_t *tflags);

void nbdt_send_req(int fd, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off, uint32_t len);
/* A simple reply's header; false on EOF. */
bool nbdt_recv_reply(int fd, uint32_t *error, uint64_t *handle);
/* One request and its reply's error (READ data, if any, into buf). */
uint32_t nbdt_roundtrip(int fd, uint16_t flags, uint16_t type, uint64_t off, uint32_t len, const void *wdata,
                        void *rbuf);

#endif
