/*
 * The API's bearer token: DATA/api.token, made at the appliance's first
 * start and read by `tidemark serve` (to check requests) and by the command
 * line (to make them).
 *
 * Format: 64 lowercase hex digits (32 random bytes from getrandom), then a
 * newline (optional when read). The file is mode 0600 and must stay
 * unreadable by group and others: a token file with any group or other
 * permission bit is refused, not used.
 */
#ifndef TM_API_TOKEN_H
#define TM_API_TOKEN_H

#include <stddef.h>

#define TM_API_TOKEN_FILE "api.token"
#define TM_API_TOKEN_BYTES 32u
#define TM_API_TOKEN_HEX (2u * TM_API_TOKEN_BYTES)

/*
 * Read DATA/api.token into out (64 digits and a NUL), or make it when there
 * is none: written to DATA/api.token.tmp (mode 0600), fsynced, renamed into
 * place, the folder fsynced. Returns 0, or nonzero with a one-line message
 * in err naming the file: TM_EINVAL (group or others have access: the mode
 * is named), TM_ECORRUPT (not a token, or not a regular file), -errno.
 */
int tm_api_token_load_or_create(const char *data_dir, char out[TM_API_TOKEN_HEX + 1], char *err, size_t errlen);

/* Read DATA/api.token only (the command line): as above, and -ENOENT when
 * there is none (the appliance has not started yet in that folder). */
int tm_api_token_read(const char *data_dir, char out[TM_API_TOKEN_HEX + 1], char *err, size_t errlen);

#endif
