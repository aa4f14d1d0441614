/*
 * Helpers for the command-line tests: run the real `tidemark` binary with its
 * stdout and stderr on pipes, a scratch folder per test, and small journals
 * made through the journal API.
 *
 * Each Criterion test runs in its own process, so the per-test state here
 * (the scratch folder, the running child) is plain statics. A hung child
 * fails the test through the suite's .timeout; the child is killed in
 * tc_teardown() and, should the test process itself die, by PR_SET_PDEATHSIG.
 */
#ifndef TM_TESTS_CLI_HELPERS_H
#define TM_TESTS_CLI_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "journal/journal.h"

#ifndef TIDEMARK_BIN
#error "TIDEMARK_BIN must name the built tidemark binary"
#endif

/* Seconds before Criterion fails a test; every wait in these tests is on an
 * event (a line, an exit), so this only catches hangs. */
#define TC_TIMEOUT 60

typedef struct tc_child {
    pid_t pid;   /* 0 once reaped */
    int out_fd;  /* -1 at EOF */
    int err_fd;  /* -1 at EOF */
    char *out;   /* everything read from stdout, NUL-terminated */
    size_t out_len;
    char *err;   /* everything read from stderr, NUL-terminated */
    size_t err_len;
    int status;  /* waitpid status once reaped */
} tc_child_t;

/* Per-test scratch folder; created by tc_setup(), removed by tc_teardown(). */
extern char tc_dir[];

void tc_setup(void);
void tc_teardown(void);

/* tc_dir + "/" + rel, in a static rotating buffer (a few live at once). */
const char *tc_path(const char *rel);

/* Start tidemark with args (NULL-terminated, without argv[0]) in the
 * folder cwd (NULL: the test's). */
void tc_spawn(tc_child_t *c, const char *cwd, const char *const *args);

/* Append what one of the child's pipes has to (*buf, *len), NUL-terminated;
 * closes the pipe and sets *fd to -1 at end of file. */
void tc_drain(int *fd, char **buf, size_t *len);

/* Read until needle appears on stdout (true) or both pipes end (false). */
bool tc_read_until(tc_child_t *c, const char *needle);

/* Read both pipes to their end and reap the child; returns the exit code,
 * or 128 + the signal that killed it. */
int tc_finish(tc_child_t *c);

/* Spawn, finish, return the exit code. The caller frees with tc_child_free. */
int tc_run(tc_child_t *c, const char *const *args);

void tc_child_free(tc_child_t *c);

/* Make a journal in dir (created) holding n records "record <lsn>" padded
 * to 100 bytes, each appended and made durable on its own (one batch each). */
void tc_make_journal(const char *dir, unsigned n);

/* Size on disk of each record tc_make_journal() writes (stored uncompressed). */
#define TC_RECORD_BYTES (100 + JNL_REC_OVERHEAD)

/* Flip one bit in the payload of record index (0-based) of the first
 * segment of a journal made by tc_make_journal(). */
void tc_flip_record_bit(const char *journal_dir, unsigned index);

/* Write text to the file at path. */
void tc_write_file(const char *path, const char *text);

bool tc_is_dir(const char *path);

/* How many lines of text contain needle. */
unsigned tc_count_lines_with(const char *text, const char *needle);

#endif
