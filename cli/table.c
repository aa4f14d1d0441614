/* Column-aligned tables for people (table.h). */
#include "cli/table.h"

#include "cli/cmd.h"

#include <errno.h>
#include <string.h>

#include "base/mem.h"

/* Right alignment is rare and columns are few: a bit per column. */
#define CLI_TABLE_MAX_COLS 32

struct cli_table {
    size_t ncols;
    size_t nrows;    /* the header included */
    size_t cap;      /* cells allocated */
    char **cells;    /* nrows * ncols, row-major; row 0 is the header */
    unsigned right;  /* bit c: column c is right-aligned */
};

/* A copy of s with control characters replaced; NULL on ENOMEM. */
static char *cli__cell_copy(const char *s)
{
    char *c = tm_strdup(s ? s : "-");
    if (!c)
        return NULL;
    for (char *p = c; *p; p++) {
        unsigned char b = (unsigned char)*p;
        if (b < 0x20 || b == 0x7f)
            *p = '?';
    }
    return c;
}

/* Width on a terminal: UTF-8 continuation bytes take no column. Wide
 * characters (CJK) are counted as one: close enough for names and tags. */
static size_t cli__width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

cli_table_t *cli_table_new(size_t ncols, const char *const *headers)
{
    if (ncols == 0 || ncols > CLI_TABLE_MAX_COLS)
        return NULL;
    cli_table_t *t = tm_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    if (cli_table_add(t, headers) != 0) {
        cli_table_free(t);
        return NULL;
    }
    return t;
}

void cli_table_align_right(cli_table_t *t, size_t col)
{
    if (col < t->ncols)
        t->right |= 1u << col;
}

int cli_table_add(cli_table_t *t, const char *const *cells)
{
    void *arr = t->cells;
    if (tm_grow(&arr, &t->cap, (t->nrows + 1) * t->ncols, sizeof(char *)) != 0)
        return -ENOMEM;
    t->cells = arr;

    char **row = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = cli__cell_copy(cells[c]);
        if (!row[c]) {
            while (c-- > 0)
                tm_free(row[c]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

size_t cli_table_rows(const cli_table_t *t)
{
    return t->nrows - 1;
}

int cli_table_print(const cli_table_t *t, FILE *out)
{
    size_t width[CLI_TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = cli__width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }

    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t pad = width[c] - cli__width(cell);
            bool last = c + 1 == t->ncols;
            if (c > 0)
                fputs("  ", out);
            if (t->right & (1u << c))
                fprintf(out, "%*s%s", (int)pad, "", cell);
            else
                fprintf(out, "%s%*s", cell, last ? 0 : (int)pad, "");
        }
        fputc('\n', out);
    }
    return ferror(out) ? -EIO : 0;
}

void cli_table_free(cli_table_t *t)
{
    if (!t)
        return;
    for (size_t k = 0; k < t->nrows * t->ncols; k++)
        tm_free(t->cells[k]);
    tm_free(t->cells);
    tm_free(t);
}

void cli_table_bytes(char *buf, size_t len, unsigned long long v)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (v < 1024) {
        snprintf(buf, len, "%llu B", v);
        return;
    }
    double x = (double)v / 1024;
    size_t u = 0;
    while (x >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        x /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", x, units[u]);
}

void cli_table_time(char *buf, size_t len, const char *t)
{
    const char *dot = t ? strchr(t, '.') : NULL;
    if (!dot) {
        snprintf(buf, len, "%s", t ? t : "-");
        return;
    }
    const char *end = dot + 1;
    while (*end >= '0' && *end <= '9')
        end++;
    int digits = (int)(end - dot - 1);
    if (digits == 0) {
        snprintf(buf, len, "%s", t);
        return;
    }
    /* Keep up to three digits, padding a shorter fraction, then the zone. */
    snprintf(buf, len, "%.*s.%.*s%.*s%s", (int)(dot - t), t, digits < 3 ? digits : 3, dot + 1,
             digits < 3 ? 3 - digits : 0, "000", end);
}

int cli_table_finish(cli_table_t *t, bool complete)
{
    int status = CLI_EXIT_FAIL;
    if (!t || !complete)
        fprintf(stderr, "tidemark: out of memory\n");
    else if (cli_table_print(t, stdout) == 0 && fflush(stdout) == 0)
        status = CLI_EXIT_OK;
    cli_table_free(t);
    return status;
}
