/* Child processes, files and resource figures for bench_points. */
#include "bench/points/bp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"


int bp_run(char *const argv[], bool quiet, double *secs)
{
    fflush(stdout);
    fflush(stderr);
    uint64_t t0 = tm_mono_ns();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench_points: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
        }
        execvp(argv[0], argv);
        fprintf(stderr, "bench_points: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "bench_points: waitpid: %s\n", strerror(errno));
            return -1;
        }
    }
    if (secs)
        *secs = (double)(tm_mono_ns() - t0) / 1e9;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fprintf(stderr, "bench_points: '%s", argv[0]);
    for (int i = 1; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    if (WIFEXITED(st))
        fprintf(stderr, "' exited with status %d\n", WEXITSTATUS(st));
    else
        fprintf(stderr, "' died of signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
}

int bp_fsync_path(const char *path, double *secs)
{
    uint64_t t0 = tm_mono_ns();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    if (secs)
        *secs = (double)(tm_mono_ns() - t0) / 1e9;
    return rc;
}

uint64_t bp_allocated(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_blocks * 512u;
}





double bp_cpu_secs(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}
