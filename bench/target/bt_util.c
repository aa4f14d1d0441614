/* Page cache, files, resource figures and a seeded generator for bench_target. */
#include "bench/target/bt.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/mem.h"






/* utime + stime of one thread, seconds; its name in comm. */
static double bt__task_cpu(const char *tid, char *comm, size_t len)
{
    char path[320], buf[512];
    comm[0] = '\0';
    snprintf(path, sizeof path, "/proc/self/task/%.255s/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "tid (comm) state ...": comm may hold spaces, so from the last ')' */
    char *open_p = strchr(buf, '('), *close_p = strrchr(buf, ')');
    if (!open_p || !close_p || close_p < open_p)
        return 0;
    size_t cl = (size_t)(close_p - open_p - 1);
    if (cl >= len)
        cl = len - 1;
    memcpy(comm, open_p + 1, cl);
    comm[cl] = '\0';
    unsigned long long ut = 0, st = 0;
    /* after ") ": state (3), then fields 4..13, utime (14), stime (15) */
    if (sscanf(close_p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

void bt_thread_cpu(bt_tcpu_t *out)
{
    char self[32], comm[64];
    memset(out, 0, sizeof *out);
    snprintf(self, sizeof self, "%d", (int)getpid());
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        double s = bt__task_cpu(e->d_name, comm, sizeof comm);
        if (strcmp(e->d_name, self) == 0)
            out->client_s += s;
        else if (strncmp(comm, "tm-nbd-read", 11) == 0)
            out->read_s += s;
        else
            out->other_s += s;
    }
    closedir(d);
}

uint64_t bt_rand(uint64_t *x)
{
    if (*x == 0)
        *x = 0x9e3779b97f4a7c15ull;
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

uint32_t *bt_pick_slots(uint64_t total, uint64_t n, uint64_t seed)
{
    uint32_t *s = tm_malloc((size_t)total * sizeof *s);
    if (!s)
        return NULL;
    for (uint64_t i = 0; i < total; i++)
        s[i] = (uint32_t)i;
    uint64_t x = seed | 1;
    /* a partial Fisher-Yates shuffle: the first n are the pick */
    for (uint64_t i = 0; i < n && i < total; i++) {
        uint64_t j = i + bt_rand(&x) % (total - i);
        uint32_t t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
    return s;
}
