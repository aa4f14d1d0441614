/*
 * A minimal NBD client, the same for both servers: fixed-newstyle
 * handshake, NBD_OPT_GO (no structured replies, no meta contexts), then
 * pipelined NBD_CMD_READ with simple replies, up to qd requests in flight
 * on one connection. The protocol constants are written out here (from the
 * NBD protocol document) so the benchmark shares no code with the server it
 * measures.
 *
 * The socket is blocking: requests are 28 bytes, so with at most qd of them
 * outstanding a send never waits on the server, and the loop is simply
 * "top up the requests, then take one reply".
 */
#include "bench/target/bt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"

#define BT_NBD_MAGIC 0x4e42444d41474943ull     /* "NBDMAGIC" */
#define BT_NBD_IHAVEOPT 0x49484156454f5054ull  /* "IHAVEOPT" */
#define BT_NBD_REP_MAGIC 0x0003e889045565a9ull
#define BT_NBD_REQUEST_MAGIC 0x25609513u
#define BT_NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define BT_NBD_FLAG_FIXED_NEWSTYLE 0x1u
#define BT_NBD_FLAG_NO_ZEROES 0x2u
#define BT_NBD_OPT_GO 7u
#define BT_NBD_REP_ACK 1u
#define BT_NBD_REP_INFO 3u
#define BT_NBD_REP_FLAG_ERROR 0x80000000u
#define BT_NBD_INFO_EXPORT 0u
#define BT_NBD_CMD_READ 0u
#define BT_NBD_CMD_DISC 2u
#define BT_NBD_REQ_LEN 28u
#define BT_NBD_REPLY_LEN 16u
#define BT_NBD_MAX_QD 256u
#define BT_NBD_MAX_OPT_REPLY 4096u
/* A server that says nothing for this long is taken as stuck. */
#define BT_NBD_IO_TIMEOUT_S 120

int bt_nbd_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = BT_NBD_IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static int bt__send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* 0, -EPIPE when the server closed, -ETIMEDOUT, or -errno. */
static int bt__recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, MSG_WAITALL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -ETIMEDOUT;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPIPE;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int bt_nbd_go(int fd, const char *name, uint64_t *size, char *err, size_t errlen)
{
    uint8_t g[18], buf[BT_NBD_MAX_OPT_REPLY + 1];
    size_t nlen = strlen(name);
    int rc;

    if (nlen > 4096) {
        snprintf(err, errlen, "export name too long");
        return TM_EINVAL;
    }
    if ((rc = bt__recv_all(fd, g, sizeof g)) != 0) {
        snprintf(err, errlen, "no greeting: %s", strerror(-rc));
        return rc;
    }
    if (tm_get_be64(g) != BT_NBD_MAGIC || tm_get_be64(g + 8) != BT_NBD_IHAVEOPT ||
        !(tm_get_be16(g + 16) & BT_NBD_FLAG_FIXED_NEWSTYLE)) {
        snprintf(err, errlen, "not a fixed-newstyle NBD server");
        return -EPROTO;
    }
    uint16_t sflags = tm_get_be16(g + 16);
    uint32_t cflags = BT_NBD_FLAG_FIXED_NEWSTYLE | (sflags & BT_NBD_FLAG_NO_ZEROES);

    /* client flags, then NBD_OPT_GO: name, no information requests */
    uint8_t *opt = tm_malloc(4 + 16 + 4 + nlen + 2);
    if (!opt)
        return -ENOMEM;
    size_t at = 0;
    tm_put_be32(opt + at, cflags);
    at += 4;
    tm_put_be64(opt + at, BT_NBD_IHAVEOPT);
    tm_put_be32(opt + at + 8, BT_NBD_OPT_GO);
    tm_put_be32(opt + at + 12, (uint32_t)(4 + nlen + 2));
    at += 16;
    tm_put_be32(opt + at, (uint32_t)nlen);
    memcpy(opt + at + 4, name, nlen);
    tm_put_be16(opt + at + 4 + nlen, 0);
    at += 4 + nlen + 2;
    rc = bt__send_all(fd, opt, at);
    tm_free(opt);
    if (rc) {
        snprintf(err, errlen, "sending NBD_OPT_GO: %s", strerror(-rc));
        return rc;
    }

    bool have_size = false;
    for (;;) {
        uint8_t h[20];
        if ((rc = bt__recv_all(fd, h, sizeof h)) != 0) {
            snprintf(err, errlen, "no reply to NBD_OPT_GO: %s", strerror(-rc));
            return rc;
        }
        uint32_t type = tm_get_be32(h + 12), len = tm_get_be32(h + 16);
        if (tm_get_be64(h) != BT_NBD_REP_MAGIC || tm_get_be32(h + 8) != BT_NBD_OPT_GO || len > BT_NBD_MAX_OPT_REPLY) {
            snprintf(err, errlen, "a malformed option reply");
            return -EPROTO;
        }
        if ((rc = bt__recv_all(fd, buf, len)) != 0) {
            snprintf(err, errlen, "option reply cut short: %s", strerror(-rc));
            return rc;
        }
        buf[len] = '\0';
        if (type == BT_NBD_REP_ACK)
            break;
        if (type & BT_NBD_REP_FLAG_ERROR) {
            snprintf(err, errlen, "NBD_OPT_GO '%s' refused (0x%" PRIx32 "): %s", name, type, (char *)buf);
            return TM_ENOTFOUND;
        }
        if (type == BT_NBD_REP_INFO && len >= 12 && tm_get_be16(buf) == BT_NBD_INFO_EXPORT) {
            *size = tm_get_be64(buf + 2);
            have_size = true;
        }
    }
    if (!have_size) {
        snprintf(err, errlen, "no NBD_INFO_EXPORT before NBD_REP_ACK");
        return -EPROTO;
    }
    return 0;
}

int bt_nbd_open(int port, const char *name, uint64_t *size, char *err, size_t errlen)
{
    int fd = bt_nbd_connect(port);
    if (fd < 0) {
        snprintf(err, errlen, "connect to 127.0.0.1:%d: %s", port, strerror(-fd));
        return fd;
    }
    int rc = bt_nbd_go(fd, name, size, err, errlen);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

static void bt__put_req(uint8_t *h, uint16_t type, uint64_t handle, uint64_t off, uint32_t len)
{
    tm_put_be32(h, BT_NBD_REQUEST_MAGIC);
    tm_put_be16(h + 4, 0);
    tm_put_be16(h + 6, type);
    tm_put_be64(h + 8, handle);
    tm_put_be64(h + 16, off);
    tm_put_be32(h + 24, len);
}

void bt_nbd_close(int fd)
{
    if (fd < 0)
        return;
    uint8_t h[BT_NBD_REQ_LEN];
    bt__put_req(h, BT_NBD_CMD_DISC, 0, 0, 0);
    (void)bt__send_all(fd, h, sizeof h);
    close(fd);
}

int bt_nbd_reads(int fd, const uint64_t *offs, size_t n, uint32_t len, unsigned qd, bool hash, uint64_t *lat,
                 bt_reads_result_t *out, char *err, size_t errlen)
{
    uint8_t reqs[BT_NBD_MAX_QD * BT_NBD_REQ_LEN], h[BT_NBD_REPLY_LEN];
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (qd == 0 || qd > BT_NBD_MAX_QD) {
        snprintf(err, errlen, "queue depth %u: 1 to %u", qd, BT_NBD_MAX_QD);
        return TM_EINVAL;
    }
    /* One scratch buffer: each reply's data is hashed (or dropped) as it
     * arrives, like a copy to null: */
    uint8_t *scratch = tm_malloc(len);
    uint8_t *done = tm_calloc(n ? n : 1, 1);
    if (!scratch || !done) {
        tm_free(scratch);
        tm_free(done);
        return -ENOMEM;
    }
    size_t next = 0, got = 0;
    unsigned inflight = 0;
    uint64_t t0 = tm_mono_ns();
    while (got < n) {
        unsigned k = 0;
        uint64_t now = lat ? tm_mono_ns() : 0;
        while (inflight < qd && next < n) {
            bt__put_req(reqs + (size_t)k * BT_NBD_REQ_LEN, BT_NBD_CMD_READ, next, offs[next], len);
            if (lat)
                lat[next] = now;
            next++;
            inflight++;
            k++;
        }
        if (k && (rc = bt__send_all(fd, reqs, (size_t)k * BT_NBD_REQ_LEN)) != 0) {
            snprintf(err, errlen, "sending requests: %s", strerror(-rc));
            goto out;
        }
        if ((rc = bt__recv_all(fd, h, sizeof h)) != 0) {
            snprintf(err, errlen, "waiting for a reply: %s", rc == -EPIPE ? "the server closed" : strerror(-rc));
            goto out;
        }
        uint64_t handle = tm_get_be64(h + 8);
        uint32_t error = tm_get_be32(h + 4);
        if (tm_get_be32(h) != BT_NBD_SIMPLE_REPLY_MAGIC || handle >= next || done[handle]) {
            snprintf(err, errlen, "a malformed reply (magic %#" PRIx32 ", handle %" PRIu64 ")", tm_get_be32(h),
                     handle);
            rc = -EPROTO;
            goto out;
        }
        if (error) {
            snprintf(err, errlen, "NBD error %" PRIu32 " (%s) reading %" PRIu32 " bytes at %" PRIu64, error,
                     strerror((int)error), len, offs[handle]);
            rc = -EIO;
            goto out;
        }
        if ((rc = bt__recv_all(fd, scratch, len)) != 0) {
            snprintf(err, errlen, "reply data cut short: %s", strerror(-rc));
            goto out;
        }
        if (lat)
            lat[handle] = tm_mono_ns() - lat[handle];
        if (hash)
            out->sum += XXH3_64bits_withSeed(scratch, len, offs[handle]);
        done[handle] = 1;
        inflight--;
        got++;
    }
    out->secs = (double)(tm_mono_ns() - t0) / 1e9;
    out->reads = n;
    out->bytes = (uint64_t)n * len;
out:
    tm_free(done);
    tm_free(scratch);
    return rc;
}
