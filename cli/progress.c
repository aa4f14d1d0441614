/* Progress bars on a terminal, JSON lines elsewhere (progress.h). */
#include "cli/progress.h"

#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/table.h"

/* The bar's cells, when the terminal is wide enough for them. */
#define CLI_PROGRESS_BAR_CELLS 30

void cli_progress_init(cli_progress_t *p, bool json_stdout)
{
    *p = (cli_progress_t){0};
    if (json_stdout) {
        p->out = stdout;
        return;
    }
    p->out = stderr;
    p->bar = isatty(STDERR_FILENO) == 1;
}

/* Bytes per second since the first update; 0 while not yet known. */
static uint64_t cli__rate(const cli_progress_t *p, uint64_t now)
{
    uint64_t dt = now - p->t0_ns;
    if (dt < CLI_PROGRESS_RATE_AFTER_NS || p->done <= p->done0)
        return 0;
    return (uint64_t)((double)(p->done - p->done0) * 1e9 / (double)dt);
}

static void cli__json_line(const cli_progress_t *p, uint64_t rate)
{
    fprintf(p->out, "{\"done_bytes\":%llu,\"total_bytes\":%llu,\"bytes_per_second\":", (unsigned long long)p->done,
            (unsigned long long)p->total);
    if (rate)
        fprintf(p->out, "%llu,\"eta_seconds\":", (unsigned long long)rate);
    else
        fputs("null,\"eta_seconds\":", p->out);
    if (rate && p->total >= p->done)
        fprintf(p->out, "%llu}\n", (unsigned long long)((p->total - p->done + rate - 1) / rate));
    else
        fputs("null}\n", p->out);
    fflush(p->out);
}

static void cli__draw(cli_progress_t *p, uint64_t rate)
{
    char done[32], total[32], speed[40], eta[32];
    unsigned cells = CLI_PROGRESS_BAR_CELLS;
    struct winsize ws;
    /* Room for the numbers (about 50 columns) before the bar. */
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        cells = ws.ws_col > 50 + 10 ? ws.ws_col - 50 : 10;
    if (cells > CLI_PROGRESS_BAR_CELLS)
        cells = CLI_PROGRESS_BAR_CELLS;

    cli_table_bytes(done, sizeof done, p->done);
    cli_table_bytes(total, sizeof total, p->total);
    if (rate) {
        cli_table_bytes(speed, sizeof speed, rate);
        strcat(speed, "/s");
        uint64_t left = p->total > p->done ? (p->total - p->done + rate - 1) / rate : 0;
        snprintf(eta, sizeof eta, "ETA %llu:%02llu", (unsigned long long)(left / 60),
                 (unsigned long long)(left % 60));
    } else {
        snprintf(speed, sizeof speed, "-- B/s");
        snprintf(eta, sizeof eta, "ETA --:--");
    }

    unsigned filled = 0, pct = 0;
    if (p->total) {
        uint64_t d = p->done < p->total ? p->done : p->total;
        filled = (unsigned)(d * cells / p->total);
        pct = (unsigned)(d * 100 / p->total);
    }
    fputs("\r[", p->out);
    for (unsigned k = 0; k < cells; k++)
        fputc(k < filled ? '#' : '.', p->out);
    /* \033[K clears what a longer earlier line left to the right. */
    fprintf(p->out, "] %3u%%  %s / %s  %s  %s\033[K", pct, done, total, speed, eta);
    fflush(p->out);
    p->drawn = true;
}

void cli_progress_update(cli_progress_t *p, uint64_t done, uint64_t total)
{
    uint64_t now = tm_mono_ns();
    bool changed = !p->any || done != p->done || total != p->total;
    if (!p->any) {
        p->t0_ns = now;
        p->done0 = done;
    }
    p->any = true;
    p->done = done;
    p->total = total;
    uint64_t rate = cli__rate(p, now);
    if (p->bar)
        cli__draw(p, rate); /* also when unchanged: the rate and ETA move */
    else if (changed)
        cli__json_line(p, rate);
}

void cli_progress_clear(cli_progress_t *p)
{
    if (p->bar && p->drawn) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
        p->drawn = false;
    }
}

void cli_progress_finish(cli_progress_t *p)
{
    if (p->bar && p->drawn) {
        fputc('\n', p->out);
        fflush(p->out);
        p->drawn = false;
    }
}
