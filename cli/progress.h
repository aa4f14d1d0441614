/*
 * Progress of a long job, for whoever is watching: on a terminal (stderr is
 * a tty) a bar redrawn in place with the rate and the time left; otherwise
 * one JSON object per line, which a script or a log can read:
 *   {"done_bytes":N,"total_bytes":N,"bytes_per_second":N|null,"eta_seconds":N|null}
 * (null while the rate is not known yet).
 * A JSON line is written only when the numbers changed, so a stalled job
 * does not fill a log.
 */
#ifndef TM_CLI_PROGRESS_H
#define TM_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The rate is not shown before this much time has passed: the first
 * samples say more about polling than about the job. */
#define CLI_PROGRESS_RATE_AFTER_NS 500000000ull

typedef struct cli_progress {
    FILE *out;
    bool bar;         /* draw a bar; else JSON lines */
    bool drawn;       /* a bar is on the screen, the cursor at its end */
    bool any;         /* something was shown */
    uint64_t t0_ns;   /* the first update */
    uint64_t done0;   /* done_bytes at the first update */
    uint64_t done;    /* the last values shown */
    uint64_t total;
} cli_progress_t;

/*
 * json_stdout: JSON lines on stdout (the command's --json). Otherwise a bar
 * on stderr when stderr is a terminal, JSON lines on stderr when it is not.
 */
void cli_progress_init(cli_progress_t *p, bool json_stdout);

void cli_progress_update(cli_progress_t *p, uint64_t done, uint64_t total);

/* Erase the bar so that a message can be printed; the next update draws it
 * again. Nothing to do for JSON lines. */
void cli_progress_clear(cli_progress_t *p);

/* Leave the last bar on the screen and move to the next line. */
void cli_progress_finish(cli_progress_t *p);

#endif
