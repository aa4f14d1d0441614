/*
 * The real `tidemark serve` as a child process: its data folder and
 * registry, starting it on a port it picks, stopping it the way an operator
 * does (SIGTERM), and what /proc says about its CPU time and memory.
 */
#include "bench/ingest/bi.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "ingest/registry.h"

#define BI_LISTEN_LINE "tidemark: agents on "
#define BI_START_MS 30000
#define BI_STOP_MS 60000

void bi_machine_name(unsigned i, char *buf, size_t len)
{
    snprintf(buf, len, BI_NAME_FMT, i + 1);
}

int bi_server_prepare(const char *data_dir, const bi_machines_t *m)
{
    char path[PATH_MAX];
    int rc = 0;
    if (mkdir(data_dir, 0700) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_ingest: mkdir %s: %s\n", data_dir, strerror(errno));
        return rc;
    }
    if (snprintf(path, sizeof path, "%s/%s", data_dir, INGEST_REGISTRY_FILE) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        rc = -errno;
        fprintf(stderr, "bench_ingest: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    fprintf(f, "# written by bench_ingest: machine NAME SECRET_HEX\n");
    for (unsigned i = 0; i < m->n; i++) {
        char name[WIRE_MAX_NAME + 1], hex[INGEST_SECRET_HEX + 1];
        bi_machine_name(i, name, sizeof name);
        ingest_hex_encode(m->secret[i], BI_SECRET_LEN, hex);
        fprintf(f, "machine %s %s\n", name, hex);
    }
    if (ferror(f))
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        fprintf(stderr, "bench_ingest: writing %s: %s\n", path, strerror(-rc));
    return rc;
}

/* The last lines of the server's log, to say why it failed. */
static void bi__log_tail(const char *log_path)
{
    char buf[2048];
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    fprintf(stderr, "bench_ingest: the end of the server's log (%s):\n%s%s", log_path, buf,
            buf[n - 1] == '\n' ? "" : "\n");
}

/* The soft RLIMIT_NOFILE this bench started with (main raises its own). */
static rlim_t bi_nofile_at_start;
static bool bi_nofile_saved;

static void bi__save_nofile(void)
{
    struct rlimit rl;
    if (!bi_nofile_saved && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        bi_nofile_at_start = rl.rlim_cur;
        bi_nofile_saved = true;
    }
}

void bi_server_note_nofile(void)
{
    bi__save_nofile();
}

int bi_server_start(const char *bin, const char *data_dir, const char *log_path, unsigned long nofile,
                    bi_server_t *s)
{
    int pipefd[2];
    memset(s, 0, sizeof *s);
    s->pid = -1;
    s->out_fd = -1;
    snprintf(s->log_path, sizeof s->log_path, "%s", log_path);
    bi__save_nofile();
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        fprintf(stderr, "bench_ingest: pipe: %s\n", strerror(errno));
        return -errno;
    }
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        int rc = -errno;
        fprintf(stderr, "bench_ingest: %s: %s\n", log_path, strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return rc;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        fprintf(stderr, "bench_ingest: fork: %s\n", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        close(logfd);
        return rc;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = nofile ? (rlim_t)nofile : bi_nofile_at_start;
            if (rl.rlim_cur > rl.rlim_max)
                rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (dup2(pipefd[1], STDOUT_FILENO) < 0 || dup2(logfd, STDERR_FILENO) < 0)
            _exit(127);
        char *const argv[] = {(char *)"tidemark", (char *)"serve",       (char *)"--data",
                              (char *)data_dir,   (char *)"--agents",    (char *)"127.0.0.1:0",
                              NULL};
        execv(bin, argv);
        _exit(127);
    }
    close(pipefd[1]);
    close(logfd);
    s->pid = pid;
    s->out_fd = pipefd[0];

    /* Read its stdout until the address line (it comes before "serving"). */
    char buf[4096];
    size_t have = 0;
    uint64_t deadline = tm_mono_ns() + (uint64_t)BI_START_MS * 1000000u;
    for (;;) {
        char *line = buf;
        char *nl;
        buf[have] = '\0';
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            if (strncmp(line, BI_LISTEN_LINE, strlen(BI_LISTEN_LINE)) == 0) {
                snprintf(s->addr, sizeof s->addr, "%s", line + strlen(BI_LISTEN_LINE));
                return 0;
            }
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        uint64_t now = tm_mono_ns();
        if (now >= deadline || have >= sizeof buf - 1)
            break;
        struct pollfd pfd = {s->out_fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(s->out_fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    fprintf(stderr, "bench_ingest: %s serve did not say where it listens\n", bin);
    bi__log_tail(log_path);
    bi_server_stop(s);
    return -EIO;
}

int bi_server_stop(bi_server_t *s)
{
    int status = 0, rc = 0;
    if (s->pid <= 0)
        return 0;
    kill(s->pid, SIGTERM);
    uint64_t deadline = tm_mono_ns() + (uint64_t)BI_STOP_MS * 1000000u;
    for (;;) {
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid)
            break;
        if (w < 0 && errno != EINTR) {
            rc = -1;
            break;
        }
        if (tm_mono_ns() > deadline) {
            fprintf(stderr, "bench_ingest: the server did not stop within %d s of SIGTERM; killing it\n",
                    BI_STOP_MS / 1000);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            rc = -1;
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "bench_ingest: the server died of signal %d\n", WTERMSIG(status));
        else
            fprintf(stderr, "bench_ingest: the server exited with status %d\n", WEXITSTATUS(status));
        bi__log_tail(s->log_path);
        rc = -1;
    }
    if (s->out_fd >= 0)
        close(s->out_fd);
    s->out_fd = -1;
    s->pid = -1;
    return rc;
}

unsigned bi_server_log_grep(const bi_server_t *s, const char *needle, char *first, size_t flen)
{
    char line[1024];
    unsigned n = 0;
    if (first && flen)
        first[0] = '\0';
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, needle))
            continue;
        if (n++ == 0 && first && flen) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(first, flen, "%s", line);
        }
    }
    fclose(f);
    return n;
}

/* ---- /proc ------------------------------------------------------------------ */

/* utime + stime (fields 14 and 15) of a /proc stat file, in seconds. */
static int bi__stat_cpu(const char *path, double *cpu)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -EIO;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -EIO;
    *cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

int bi_proc_read(pid_t pid, bi_proc_t *out)
{
    char path[64], line[256];
    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int rc = bi__stat_cpu(path, &out->cpu_s);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)pid);
    bi__stat_cpu(path, &out->loop_cpu_s);

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            out->rss_kib = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            out->hwm_kib = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "Threads:", 8) == 0)
            out->threads = strtol(line + 8, NULL, 10);
    }
    fclose(f);

    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "write_bytes:", 12) == 0)
                out->write_bytes = strtoull(line + 12, NULL, 10);
        }
        fclose(f);
    }
    return 0;
}
