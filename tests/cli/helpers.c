#include "tests/cli/helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal.h"

char tc_dir[PATH_MAX];

/* The child a failed assertion may leave running; killed in teardown. */
static tc_child_t *tc__live;

void tc_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tc_dir, sizeof tc_dir, "%s/tidemark-cli-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(tc_dir), "mkdtemp: %s", strerror(errno));
}

static int tc__rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tc_teardown(void)
{
    if (tc__live && tc__live->pid > 0) {
        kill(tc__live->pid, SIGKILL);
        waitpid(tc__live->pid, NULL, 0);
        tc__live->pid = 0;
    }
    /* TIDEMARK_KEEP_TMP keeps the folder for looking at a failure, as in
     * the other suites. */
    if (tc_dir[0] && !getenv("TIDEMARK_KEEP_TMP"))
        nftw(tc_dir, tc__rm, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tc_path(const char *rel)
{
    static char bufs[4][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 4];
    int n = snprintf(b, PATH_MAX, "%s/%s", tc_dir, rel);
    cr_assert(n > 0 && n < PATH_MAX, "path too long");
    return b;
}

void tc_spawn(tc_child_t *c, const char *cwd, const char *const *args)
{
    int outp[2], errp[2];
    const char *argv[32];
    unsigned n = 0;

    memset(c, 0, sizeof *c);
    argv[n++] = "tidemark";
    for (; args[n - 1]; n++) {
        cr_assert_lt(n, 31, "too many arguments");
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;

    cr_assert_eq(pipe2(outp, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(errp, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. A child that outlives the
         * test (a timeout) must not keep serving forever. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGPIPE, &dfl, NULL);
        if (dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(127);
        if (cwd && chdir(cwd) != 0)
            _exit(127);
        execv(TIDEMARK_BIN, (char *const *)argv);
        _exit(127);
    }
    close(outp[1]);
    close(errp[1]);
    c->pid = pid;
    c->out_fd = outp[0];
    c->err_fd = errp[0];
    c->out = tm_calloc(1, 1);
    c->err = tm_calloc(1, 1);
    cr_assert(c->out && c->err);
    tc__live = c;
}

/* Read what one pipe has; closes it at EOF. */
void tc_drain(int *fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t r = read(*fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
        return;
    cr_assert_geq(r, 0, "read from child: %s", strerror(errno));
    if (r == 0) {
        close(*fd);
        *fd = -1;
        return;
    }
    char *grown = tm_realloc(*buf, *len + (size_t)r + 1);
    cr_assert_not_null(grown);
    memcpy(grown + *len, chunk, (size_t)r);
    *len += (size_t)r;
    grown[*len] = '\0';
    *buf = grown;
}

bool tc_read_until(tc_child_t *c, const char *needle)
{
    for (;;) {
        if (needle && strstr(c->out, needle))
            return true;
        if (c->out_fd < 0 && c->err_fd < 0)
            return false;
        struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLIN}, {.fd = c->err_fd, .events = POLLIN}};
        int r = poll(p, 2, -1); /* a hang is caught by the test's timeout */
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_gt(r, 0, "poll: %s", strerror(errno));
        if (p[0].revents)
            tc_drain(&c->out_fd, &c->out, &c->out_len);
        if (p[1].revents)
            tc_drain(&c->err_fd, &c->err, &c->err_len);
    }
}

int tc_finish(tc_child_t *c)
{
    tc_read_until(c, NULL);
    pid_t r;
    do
        r = waitpid(c->pid, &c->status, 0);
    while (r < 0 && errno == EINTR);
    cr_assert_eq(r, c->pid, "waitpid: %s", strerror(errno));
    c->pid = 0;
    if (WIFEXITED(c->status))
        return WEXITSTATUS(c->status);
    return 128 + WTERMSIG(c->status);
}

int tc_run(tc_child_t *c, const char *const *args)
{
    tc_spawn(c, NULL, args);
    return tc_finish(c);
}

void tc_child_free(tc_child_t *c)
{
    if (tc__live == c)
        tc__live = NULL;
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->err_fd >= 0)
        close(c->err_fd);
    tm_free(c->out);
    tm_free(c->err);
    memset(c, 0, sizeof *c);
    c->out_fd = c->err_fd = -1;
}

void tc_make_journal(const char *dir, unsigned n)
{
    jnl_t *j = NULL;
    char payload[100];

    tm_log_set_level(TM_LOG_WARN); /* the journal's "new journal" notes are noise here */
    cr_assert(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    jnl_options_t opts = {.segment_size = JNL_MIN_SEGMENT, .max_record = 4096};
    int rc = jnl_open(dir, &opts, &j);
    cr_assert_eq(rc, 0, "jnl_open: %s", tm_strerror(rc));
    for (unsigned i = 1; i <= n; i++) {
        uint64_t lsn = 0;
        memset(payload, '.', sizeof payload);
        snprintf(payload, sizeof payload, "record %u", i);
        rc = jnl_append_wait(j, 7, payload, sizeof payload, 0, &lsn);
        cr_assert_eq(rc, 0, "jnl_append_wait: %s", tm_strerror(rc));
        cr_assert_eq(lsn, i);
    }
    jnl_close(j);
    jnl_destroy(j);
}

void tc_flip_record_bit(const char *journal_dir, unsigned index)
{
    DIR *d = opendir(journal_dir);
    cr_assert_not_null(d, "opendir %s: %s", journal_dir, strerror(errno));
    uint64_t best = UINT64_MAX;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t seq;
        if (jnl_parse_seg_name(e->d_name, &seq) && seq < best)
            best = seq;
    }
    closedir(d);
    cr_assert_neq(best, UINT64_MAX, "no segment in %s", journal_dir);

    char path[PATH_MAX];
    char name[64];
    snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)best);
    snprintf(path, sizeof path, "%s/%s", journal_dir, name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    off_t off = JNL_SEG_DATA_OFF + (off_t)index * TC_RECORD_BYTES + JNL_REC_HDR_LEN + 3;
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

void tc_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

bool tc_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

unsigned tc_count_lines_with(const char *text, const char *needle)
{
    unsigned n = 0;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit && hit < line + len)
            n++;
        line += len + (end ? 1 : 0);
    }
    return n;
}
