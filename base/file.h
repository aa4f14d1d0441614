/*
 * Small files replaced whole: the content is written to NAME.tmp beside
 * the file, made durable, renamed over it, and the folder made durable,
 * so a reader (or a restart after a crash at any moment) sees the old
 * content or the new, never a mix.
 */
#ifndef TM_FILE_H
#define TM_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Replace dir/name with len bytes of data, created with mode. 0 or -errno
 * (-ENAMETOOLONG for a path over PATH_MAX); the .tmp is gone on error. */
int tm_file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode);

/* Read all of path (at most max bytes) into a new NUL-terminated buffer:
 * 0 with *out and *len, -ENOENT when it is missing, -EFBIG over max,
 * -errno. */
int tm_file_read(const char *path, size_t max, char **out, size_t *len);

#endif
