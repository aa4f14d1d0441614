/*
 * Time to first byte: what a failed-over machine waits before its disk
 * answers. Today it starts at the NBD open of MACHINE/DISK@latest-processed;
 * once failover jobs exist it will start at the job request instead.
 */
#include "bench/target/bt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "base/clock.h"

#define BT_FIRST_LEN 4096u

int bt_first_byte(int port, const char *name, uint64_t off, bt_first_t *out, char *err, size_t errlen)
{
    uint64_t size = 0;
    memset(out, 0, sizeof *out);
    uint64_t t0 = tm_mono_ns();
    int fd = bt_nbd_open(port, name, &size, err, errlen);
    if (fd < 0)
        return fd;
    uint64_t t1 = tm_mono_ns();
    if (off + BT_FIRST_LEN > size) {
        snprintf(err, errlen, "the export is %llu bytes, the read at %llu is past its end", (unsigned long long)size,
                 (unsigned long long)off);
        bt_nbd_close(fd);
        return -EINVAL;
    }
    bt_reads_result_t r;
    int rc = bt_nbd_reads(fd, &off, 1, BT_FIRST_LEN, 1, true, NULL, &r, err, errlen);
    uint64_t t2 = tm_mono_ns();
    bt_nbd_close(fd);
    if (rc)
        return rc;
    out->total_s = (double)(t2 - t0) / 1e9;
    out->open_s = (double)(t1 - t0) / 1e9;
    out->read_s = (double)(t2 - t1) / 1e9;
    out->sum = r.sum;
    return 0;
}
