/*
 * Column-aligned tables for people: a header row in capitals, then rows;
 * columns two spaces apart, each as wide as its widest cell, the last one
 * not padded. Cells are copied; control characters in them (a tag name
 * from the appliance, say) are shown as '?' so they cannot move the cursor.
 */
#ifndef TM_CLI_TABLE_H
#define TM_CLI_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_table cli_table_t;

/* A table of ncols columns with these headers (copied). NULL on ENOMEM. */
cli_table_t *cli_table_new(size_t ncols, const char *const *headers);

/* Right-align column col (numbers read better that way). */
void cli_table_align_right(cli_table_t *t, size_t col);

/* Append a row of ncols cells (copied; NULL is shown as "-"). 0 or -ENOMEM. */
int cli_table_add(cli_table_t *t, const char *const *cells);

size_t cli_table_rows(const cli_table_t *t);

/* 0 or -EIO. */
int cli_table_print(const cli_table_t *t, FILE *out);

void cli_table_free(cli_table_t *t);

/* The end of a command's table: print t on stdout when complete (every row
 * was added; t may be NULL: out of memory), free it. CLI_EXIT_OK, or
 * CLI_EXIT_FAIL when it could not be made or written (said on stderr). */
int cli_table_finish(cli_table_t *t, bool complete);

/* An RFC 3339 time from the API with its fraction cut to milliseconds
 * ("2026-11-27T10:00:01.123Z"); anything else is copied as it is. */
void cli_table_time(char *buf, size_t len, const char *rfc3339);

/* A byte count for people: "512 B", "1.5 KiB", "1.0 GiB" (powers of 1024). */
void cli_table_bytes(char *buf, size_t len, unsigned long long v);

#endif
