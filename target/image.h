/*
 * Writing a disk at a point out as a sparse raw image (materialize, and the
 * failover job's full copies later), through the rebuild reader.
 */
#ifndef TM_TARGET_IMAGE_H
#define TM_TARGET_IMAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "target/reader.h"

/* Called after each piece with the bytes done so far (of the disk size). */
typedef void (*tgt_progress_fn)(void *arg, uint64_t done);

/*
 * Write the disk of view v to path: created as path + ".part" (mode 0644),
 * regions that are zero left as holes, synced, then renamed to path, so
 * path never holds a partial image. cancel (may be NULL) is polled between
 * pieces (TM_ECLOSED when set). err gets a message on failure. 0,
 * TM_ECORRUPT (a write fails its checksum: the message names point, disk
 * and position), TM_ERETIRED, -errno.
 */
int tgt_write_image(const tgt_view_t *v, const char *path, tgt_progress_fn progress, void *arg,
                    const atomic_bool *cancel, char *err, size_t errlen);

#endif
