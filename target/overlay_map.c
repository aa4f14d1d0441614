/*
 * The stored map of a failover's overlay (overlay.h; the format is
 * docs/failover-overlay.md, version 1): PATH.map beside the data file,
 *
 *   0      the header (256 bytes; the rest of the first 4096 is zero):
 *            0  8 magic      "TMOV\r\n\x1a\n"
 *            8  4 version    1
 *           12  4 flags      bit 0: standalone (every block is in the file)
 *           16  8 disk_size
 *           24  4 block_size 65536
 *           28  4 rec_size   512
 *           32  8 nrec       records that follow
 *           40  8 map_id     random, nonzero: seeds the records' checksums
 *           48  8 seq        the point the overlay was made over (nonzero)
 *           56  8 created_ns
 *           64  4 disk_ix    the disk's position in its machine
 *           68  4 0
 *           72 64 machine    NUL-padded
 *          136 64 disk       NUL-padded
 *          200 48 0
 *          248  8 checksum   XXH3-64 (seed 0) of bytes 0..247
 *   4096   record r at 4096 + 512 r:
 *            0 480 bits      60 words, u64 LE; bit i of word w is block
 *                            3840 r + 64 w + i
 *          480   8 r
 *          488  16 0
 *          504   8 checksum  XXH3-64 seeded with map_id, of bytes 0..503
 *
 * Each record and the header is one 512-byte sector, rewritten in place:
 * the sector write is taken as atomic (as PostgreSQL takes pg_control's);
 * a checksum that does not verify is damage, refused by name.
 */
#include "target/overlay_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"

#define TGT_OV_HDR_SUM 248u
#define TGT_OV_REC_SUM 504u

static const uint8_t tgt__magic[8] = {'T', 'M', 'O', 'V', '\r', '\n', 0x1a, '\n'};

/* ---- encoding ------------------------------------------------------------ */

static void tgt__hdr_encode(const tgt_ov_t *ov, uint32_t flags, uint8_t *h)
{
    memset(h, 0, TGT_OV_HDR_LEN);
    memcpy(h, tgt__magic, sizeof tgt__magic);
    tm_put32(h + 8, TGT_OV_MAP_VERSION);
    tm_put32(h + 12, flags);
    tm_put64(h + 16, ov->size);
    tm_put32(h + 24, TGT_OV_BLOCK);
    tm_put32(h + 28, TGT_OV_REC_LEN);
    tm_put64(h + 32, ov->nrec);
    tm_put64(h + 40, ov->map_id);
    tm_put64(h + 48, ov->seq);
    tm_put64(h + 56, ov->created_ns);
    tm_put32(h + 64, ov->disk_ix);
    memcpy(h + 72, ov->machine, strlen(ov->machine));
    memcpy(h + 136, ov->disk, strlen(ov->disk));
    tm_put64(h + TGT_OV_HDR_SUM, XXH3_64bits(h, TGT_OV_HDR_SUM));
}

/* Record r from the bits; under mu (or before anyone else sees ov). */
static void tgt__rec_encode(const tgt_ov_t *ov, uint64_t r, uint8_t *p)
{
    memset(p, 0, TGT_OV_REC_LEN);
    const uint64_t *w = ov->bits + r * TGT_OV_REC_WORDS;
    for (unsigned i = 0; i < TGT_OV_REC_WORDS; i++)
        tm_put64(p + 8 * i, w[i]);
    tm_put64(p + 480, r);
    tm_put64(p + TGT_OV_REC_SUM, XXH3_64bits_withSeed(p, TGT_OV_REC_SUM, ov->map_id));
}

static bool tgt__all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* The fsync that makes a new or renamed entry of path's folder durable. */
static int tgt__sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int tgt__map_buffers(tgt_ov_t *ov)
{
    ov->recbuf = tm_malloc((size_t)ov->nrec * TGT_OV_REC_LEN);
    ov->pending = tm_malloc((size_t)ov->nrec * sizeof *ov->pending);
    return ov->recbuf && ov->pending ? 0 : -ENOMEM;
}

static void tgt__set_names(tgt_ov_t *ov, const char *machine, const char *disk)
{
    snprintf(ov->machine, sizeof ov->machine, "%s", machine ? machine : "");
    snprintf(ov->disk, sizeof ov->disk, "%s", disk ? disk : "");
}

/* ---- create -------------------------------------------------------------- */

int tgt_ov_create_stored(const char *path, const tgt_ov_info_t *info, tgt_ov_base_fn base, void *base_arg,
                         tgt_ov_t **out, char *err, size_t errlen)
{
    *out = NULL;
    tgt_ov_t *ov;
    int rc = tgt__ov_alloc(path, info->size, base, base_arg, &ov);
    if (rc == 0)
        rc = tgt__map_buffers(ov);
    if (rc) {
        if (ov)
            tgt__ov_free(ov);
        snprintf(err, errlen, "overlay %s: out of memory", path);
        return rc;
    }
    ov->map_id = tm_random_u64();
    ov->seq = info->seq;
    ov->created_ns = tm_now_ns();
    ov->disk_ix = info->disk_ix;
    tgt__set_names(ov, info->machine, info->disk);
    const char *what = "remove the old map";
    char tmp_path[PATH_MAX + 16];
    snprintf(tmp_path, sizeof tmp_path, "%s.new", ov->map_path);
    uint8_t *buf = NULL;
    /* An old map goes first, durably: a map beside a truncated data file
     * would read as blocks of zeroes. Data without a map is an overlay
     * whose making did not finish, made again by the next start. */
    if (unlink(ov->map_path) != 0 && errno != ENOENT)
        goto fail_errno;
    what = "sync its folder";
    if ((rc = tgt__sync_dir_of(path)) != 0)
        goto fail;
    what = "create the data file";
    ov->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ov->fd < 0)
        goto fail_errno;
    what = "size the data file";
    if (ftruncate(ov->fd, (off_t)info->size) != 0 || fsync(ov->fd) != 0)
        goto fail_errno;
    what = "write the map";
    size_t len = TGT_OV_HDR_REGION + (size_t)ov->nrec * TGT_OV_REC_LEN;
    buf = tm_calloc(1, len);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    tgt__hdr_encode(ov, 0, buf);
    for (uint64_t r = 0; r < ov->nrec; r++)
        tgt__rec_encode(ov, r, buf + TGT_OV_HDR_REGION + r * TGT_OV_REC_LEN);
    ov->map_fd = open(tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ov->map_fd < 0)
        goto fail_errno;
    if ((rc = tgt__ov_pwrite_full(ov->map_fd, buf, len, 0)) != 0)
        goto fail;
    if (fdatasync(ov->map_fd) != 0)
        goto fail_errno;
    what = "rename the map into place";
    if (rename(tmp_path, ov->map_path) != 0)
        goto fail_errno;
    what = "sync its folder";
    if ((rc = tgt__sync_dir_of(path)) != 0)
        goto fail;
    tm_free(buf);
    *out = ov;
    return 0;

fail_errno:
    rc = -errno;
fail:
    snprintf(err, errlen, "overlay %s: cannot %s: %s", path, what, tm_strerror(rc));
    tm_free(buf);
    if (ov->map_fd >= 0)
        unlink(tmp_path);
    tgt__ov_free(ov);
    return rc;
}

/* ---- open ---------------------------------------------------------------- */

static uint64_t tgt__nrec_of(uint64_t size)
{
    uint64_t nblocks = size / TGT_OV_BLOCK + (size % TGT_OV_BLOCK != 0);
    return nblocks ? (nblocks + TGT_OV_REC_BLOCKS - 1) / TGT_OV_REC_BLOCKS : 1;
}

/* The header region of the map at p (file_len bytes long), checked before
 * anything is sized by it; fields left to tgt__hdr_decode. 0 or TM_E*
 * with err. */
static int tgt__hdr_check(const char *p, const uint8_t *h, uint64_t file_len, char *err, size_t errlen)
{
    if (memcmp(h, tgt__magic, sizeof tgt__magic) != 0) {
        snprintf(err, errlen, "overlay map %s is not an overlay map (its first bytes are not the magic)", p);
        return TM_ECORRUPT;
    }
    uint32_t version = tm_get32(h + 8);
    /* The version before the checksum: another version may checksum its
     * header otherwise, and is refused by its version, not as damage. */
    if (version != TGT_OV_MAP_VERSION) {
        snprintf(err, errlen, "overlay map %s is of format version %" PRIu32 "; this build reads version %u", p,
                 version, TGT_OV_MAP_VERSION);
        return TM_EVERSION;
    }
    if (tm_get64(h + TGT_OV_HDR_SUM) != XXH3_64bits(h, TGT_OV_HDR_SUM)) {
        snprintf(err, errlen, "overlay map %s: the header's checksum does not verify (the map is damaged)", p);
        return TM_ECORRUPT;
    }
    uint64_t nrec = tm_get64(h + 32);
    if (nrec != tgt__nrec_of(tm_get64(h + 16)) || tm_get32(h + 24) != TGT_OV_BLOCK ||
        tm_get32(h + 28) != TGT_OV_REC_LEN) {
        snprintf(err, errlen, "overlay map %s: impossible header fields (block, record or disk sizes)", p);
        return TM_ECORRUPT;
    }
    if (file_len != TGT_OV_HDR_REGION + nrec * TGT_OV_REC_LEN) {
        snprintf(err, errlen, "overlay map %s is %" PRIu64 " bytes; its header says %" PRIu64 " (truncated or damaged)",
                 p, file_len, TGT_OV_HDR_REGION + nrec * TGT_OV_REC_LEN);
        return TM_ECORRUPT;
    }
    if (!tgt__all_zero(h + 256, TGT_OV_HDR_REGION - 256)) {
        snprintf(err, errlen, "overlay map %s: bytes 256..4095 are not zero (the map is damaged)", p);
        return TM_ECORRUPT;
    }
    return 0;
}

/* The header's fields into ov (sized by the header); 0 or TM_ECORRUPT
 * with err. */
static int tgt__hdr_decode(tgt_ov_t *ov, const uint8_t *h, uint32_t *flags, char *err, size_t errlen)
{
    const char *p = ov->map_path;
    *flags = tm_get32(h + 12);
    char machine[WIRE_MAX_NAME + 2] = "", disk[WIRE_MAX_NAME + 2] = "";
    memcpy(machine, h + 72, 64);
    memcpy(disk, h + 136, 64);
    const char *bad = NULL;
    if ((*flags & ~TGT_OV_FLAG_STANDALONE) != 0)
        bad = "unknown flags";
    else if (tm_get64(h + 40) == 0 || tm_get64(h + 48) == 0)
        bad = "a zero map id or point";
    else if (!wire_name_ok(machine) || !wire_name_ok(disk))
        bad = "a machine or disk name that is not one";
    else if (!tgt__all_zero(h + 200, 48) || tm_get32(h + 68) != 0)
        bad = "reserved bytes that are not zero";
    if (bad) {
        snprintf(err, errlen, "overlay map %s: impossible header fields (%s)", p, bad);
        return TM_ECORRUPT;
    }
    ov->map_id = tm_get64(h + 40);
    ov->seq = tm_get64(h + 48);
    ov->created_ns = tm_get64(h + 56);
    ov->disk_ix = tm_get32(h + 64);
    tgt__set_names(ov, machine, disk);
    return 0;
}

/* Read and check every record into ov->bits; 0 or TM_ECORRUPT with err. */
static int tgt__recs_load(tgt_ov_t *ov, const uint8_t *buf, char *err, size_t errlen)
{
    for (uint64_t r = 0; r < ov->nrec; r++) {
        const uint8_t *p = buf + r * TGT_OV_REC_LEN;
        uint64_t at = TGT_OV_HDR_REGION + r * TGT_OV_REC_LEN;
        if (tm_get64(p + TGT_OV_REC_SUM) != XXH3_64bits_withSeed(p, TGT_OV_REC_SUM, ov->map_id)) {
            snprintf(err, errlen,
                     "overlay map %s: record %" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
                     ") does not verify: the map is damaged or torn",
                     ov->map_path, r, at, at + TGT_OV_REC_LEN - 1);
            return TM_ECORRUPT;
        }
        if (tm_get64(p + 480) != r || !tgt__all_zero(p + 488, 16)) {
            snprintf(err, errlen, "overlay map %s: record %" PRIu64 " (at byte %" PRIu64 ") is another record's",
                     ov->map_path, r, at);
            return TM_ECORRUPT;
        }
        uint64_t *w = ov->bits + r * TGT_OV_REC_WORDS;
        for (unsigned i = 0; i < TGT_OV_REC_WORDS; i++)
            w[i] = tm_get64(p + 8 * i);
    }
    /* nothing past the disk's last block */
    for (uint64_t b = ov->nblocks; b < ov->nrec * TGT_OV_REC_BLOCKS; b++) {
        if (tgt__ov_test(ov, b)) {
            snprintf(err, errlen, "overlay map %s: block %" PRIu64 " is marked written, past the disk's end",
                     ov->map_path, b);
            return TM_ECORRUPT;
        }
    }
    for (uint64_t b = 0; b < ov->nblocks; b++)
        ov->nset += tgt__ov_test(ov, b);
    return 0;
}

/* What the caller expects of the overlay; 0 or TM_EINVAL with err. */
static int tgt__check_want(const tgt_ov_t *ov, const tgt_ov_info_t *want, char *err, size_t errlen)
{
    const char *p = ov->map_path;
    if ((want->machine && strcmp(want->machine, ov->machine) != 0) ||
        (want->disk && strcmp(want->disk, ov->disk) != 0)) {
        snprintf(err, errlen, "overlay map %s is of machine %s disk %s, not %s %s", p, ov->machine, ov->disk,
                 want->machine ? want->machine : ov->machine, want->disk ? want->disk : ov->disk);
        return TM_EINVAL;
    }
    if (want->size && want->size != ov->size) {
        snprintf(err, errlen, "overlay map %s is of a disk of %" PRIu64 " bytes; the disk has %" PRIu64, p, ov->size,
                 want->size);
        return TM_EINVAL;
    }
    if (want->seq && want->seq != ov->seq) {
        snprintf(err, errlen, "overlay map %s was made over point %" PRIu64 ", not %" PRIu64, p, ov->seq, want->seq);
        return TM_EINVAL;
    }
    if (!want->seq && !ov->standalone) {
        snprintf(err, errlen,
                 "overlay map %s is not standalone (a commit did not finish): it still reads point %" PRIu64, p,
                 ov->seq);
        return TM_EINVAL;
    }
    return 0;
}

int tgt_ov_open(const char *path, const tgt_ov_info_t *want, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out,
                char *err, size_t errlen)
{
    *out = NULL;
    uint8_t hdr[TGT_OV_HDR_REGION];
    char map_path[PATH_MAX + 8];
    snprintf(map_path, sizeof map_path, "%s.map", path);
    int mfd = open(map_path, O_RDWR | O_CLOEXEC);
    if (mfd < 0) {
        int rc = -errno;
        snprintf(err, errlen, "overlay map %s: cannot open it: %s", map_path, tm_strerror(rc));
        return rc;
    }
    struct stat st;
    int rc = fstat(mfd, &st) == 0 ? 0 : -errno;
    if (rc == 0 && st.st_size < (off_t)TGT_OV_HDR_REGION) {
        snprintf(err, errlen, "overlay map %s is %lld bytes: too short for its header (truncated)", map_path,
                 (long long)st.st_size);
        close(mfd);
        return TM_ECORRUPT;
    }
    if (rc == 0)
        rc = tgt__ov_pread_full(mfd, hdr, sizeof hdr, 0);
    if (rc) {
        snprintf(err, errlen, "overlay map %s: cannot read it: %s", map_path, tm_strerror(rc));
        close(mfd);
        return rc;
    }
    if ((rc = tgt__hdr_check(map_path, hdr, (uint64_t)st.st_size, err, errlen)) != 0) {
        close(mfd);
        return rc;
    }
    /* sized by a header that verified, and that the file's length bears out */
    tgt_ov_t *ov;
    if ((rc = tgt__ov_alloc(path, tm_get64(hdr + 16), base, base_arg, &ov)) != 0 ||
        (rc = tgt__map_buffers(ov)) != 0) {
        if (ov)
            tgt__ov_free(ov);
        snprintf(err, errlen, "overlay map %s: out of memory", map_path);
        close(mfd);
        return -ENOMEM;
    }
    ov->map_fd = mfd;
    uint32_t flags = 0;
    if ((rc = tgt__hdr_decode(ov, hdr, &flags, err, errlen)) != 0)
        goto fail;
    rc = tgt__ov_pread_full(mfd, ov->recbuf, (size_t)ov->nrec * TGT_OV_REC_LEN, TGT_OV_HDR_REGION);
    if (rc) {
        snprintf(err, errlen, "overlay map %s: cannot read it: %s", map_path, tm_strerror(rc));
        goto fail;
    }
    if ((rc = tgt__recs_load(ov, ov->recbuf, err, errlen)) != 0)
        goto fail;
    ov->standalone = flags & TGT_OV_FLAG_STANDALONE;
    if (ov->standalone && ov->nset != ov->nblocks) {
        snprintf(err, errlen, "overlay map %s says standalone, but %" PRIu64 " of its %" PRIu64
                 " blocks are not in the file", map_path, ov->nblocks - ov->nset, ov->nblocks);
        rc = TM_ECORRUPT;
        goto fail;
    }
    if ((rc = tgt__check_want(ov, want, err, errlen)) != 0)
        goto fail;
    ov->fd = open(path, O_RDWR | O_CLOEXEC);
    if (ov->fd < 0 || fstat(ov->fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "overlay %s: cannot open the data file its map %s describes: %s", path, map_path,
                 tm_strerror(rc));
        goto fail;
    }
    if ((uint64_t)st.st_size != ov->size) {
        snprintf(err, errlen, "overlay %s is %lld bytes; its map says the disk is %" PRIu64 " (truncated or damaged)",
                 path, (long long)st.st_size, ov->size);
        rc = TM_ECORRUPT;
        goto fail;
    }
    if (ov->standalone)
        atomic_store(&ov->filled, ov->size);
    *out = ov;
    return 0;

fail:
    tgt__ov_free(ov); /* closes mfd */
    return rc;
}

/* ---- flushes --------------------------------------------------------------- */

void tgt__ov_map_collect(tgt_ov_t *ov, size_t *n)
{
    size_t k = 0;
    pthread_mutex_lock(&ov->mu);
    for (uint64_t r = 0; r < ov->nrec; r++) {
        if (!ov->dirty[r])
            continue;
        ov->dirty[r] = 0;
        tgt__rec_encode(ov, r, ov->recbuf + r * TGT_OV_REC_LEN);
        ov->pending[k++] = r;
    }
    pthread_mutex_unlock(&ov->mu);
    *n = k;
}

int tgt__ov_map_write(tgt_ov_t *ov, size_t n, char *err, size_t errlen)
{
    /* neighbouring records in one write */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && ov->pending[j] == ov->pending[j - 1] + 1)
            j++;
        uint64_t r = ov->pending[i];
        int rc = tgt__ov_pwrite_full(ov->map_fd, ov->recbuf + r * TGT_OV_REC_LEN, (j - i) * TGT_OV_REC_LEN,
                                     TGT_OV_HDR_REGION + r * TGT_OV_REC_LEN);
        if (rc) {
            snprintf(err, errlen, "overlay map %s: writing records %" PRIu64 "..%" PRIu64 " failed: %s", ov->map_path,
                     r, ov->pending[j - 1], tm_strerror(rc));
            return rc;
        }
        i = j;
    }
    if (fdatasync(ov->map_fd) != 0) {
        int rc = -errno;
        snprintf(err, errlen, "overlay map %s: flush failed: %s", ov->map_path, tm_strerror(rc));
        return rc;
    }
    return 0;
}

int tgt__ov_map_standalone(tgt_ov_t *ov, char *err, size_t errlen)
{
    uint8_t h[TGT_OV_HDR_LEN];
    tgt__hdr_encode(ov, TGT_OV_FLAG_STANDALONE, h);
    pthread_mutex_lock(&ov->fmu);
    int rc = ov->flush_err;
    if (rc == 0 && (rc = tgt__ov_pwrite_full(ov->map_fd, h, sizeof h, 0)) == 0 && fdatasync(ov->map_fd) != 0)
        rc = -errno;
    if (rc) {
        snprintf(err, errlen, "overlay map %s: marking it standalone failed: %s", ov->map_path, tm_strerror(rc));
        ov->flush_err = rc;
    }
    pthread_mutex_unlock(&ov->fmu);
    return rc;
}
