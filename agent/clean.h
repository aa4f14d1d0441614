/*
 * Clean-shutdown markers of the tap agent: a small file beside each image,
 * IMAGE.tidemark-clean, written when the agent stopped cleanly (every
 * record acknowledged, the NBD server closed, the image synced) and
 * removed when an agent starts on the image, before it serves a single
 * write. So a marker exists only while no agent runs and the image has not
 * changed through one since the appliance acknowledged everything: an
 * agent that finds it may skip the resync of that disk (if the WELCOME's
 * next_seq agrees with the sequence it records). Without one (a first
 * start, a SIGKILL, a crash, a power loss) the agent resyncs.
 *
 * Text, one field a line:
 *
 *   tidemark-tap-clean 1
 *   machine NAME
 *   disk NAME
 *   size BYTES
 *   seq N          (every record up to N was acknowledged; N+1 is the next)
 *
 * A change of the image while no agent runs (another tool writing it) is
 * not noticed: remove the marker after writing an image behind the agent's
 * back.
 */
#ifndef TM_AGENT_CLEAN_H
#define TM_AGENT_CLEAN_H

#include <stdint.h>

#define AGENT_CLEAN_SUFFIX ".tidemark-clean"
#define AGENT_CLEAN_MAX 512u /* bytes of a marker read at most */

/*
 * Take (read and remove) the marker of image. 1 when it was there and names
 * this machine, disk and size (*seq gets its sequence); 0 when there was
 * none, or one for something else or unreadable (removed too, with a
 * warning). The removal is synced (the folder too) before this returns, so
 * a crash after a write cannot leave a marker behind. -errno when it could
 * not be removed: the agent must not run then.
 */
int agent_clean_take(const char *image, const char *machine, const char *disk, uint64_t size, uint64_t *seq);

/* Sync the image (image_fd, any open descriptor of it), then write its
 * marker atomically (a temporary file, fsync, rename, fsync of the
 * folder). 0 or -errno. */
int agent_clean_put(const char *image, int image_fd, const char *machine, const char *disk, uint64_t size,
                    uint64_t seq);

#endif
