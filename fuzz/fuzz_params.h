/*
 * Values the seed generator (gen_corpus.c) and the fuzz targets share, so
 * that the committed seeds are valid for the salts the targets try.
 */
#ifndef TM_FUZZ_PARAMS_H
#define TM_FUZZ_PARAMS_H

#include <stdio.h>
#include <stdlib.h>

/* The salt the seed records are sealed with, and a second one: a seed sealed
 * with one is a "stale salt" record for the other. */
#define FUZZ_SALT_A 0x5eed5a17c0ffee01ull
#define FUZZ_SALT_B 0x0badcafe12345678ull

/* Fixed wall clock for seeds, so regenerating them gives the same bytes. */
#define FUZZ_TIME_NS 1790000000000000000ull

/* fuzz_nbd_proto's input: a prefix describing the export (u8 config of the
 * bits below, u16 raw transmission flags, u64 size, both big-endian), then
 * the client's bytes. */
#define FUZZ_NBD_PREFIX_LEN 11u
#define FUZZ_NBD_WRITE 0x01u        /* the backend offers write */
#define FUZZ_NBD_FLUSH 0x02u        /* ... flush */
#define FUZZ_NBD_TRIM 0x04u         /* ... trim */
#define FUZZ_NBD_ZERO 0x08u         /* ... zero */
#define FUZZ_NBD_RO 0x10u           /* the export is read-only */
#define FUZZ_NBD_MULTI 0x20u        /* flushes cover every connection */
#define FUZZ_NBD_TRANSMISSION 0x40u /* the bytes start after the handshake */
#define FUZZ_NBD_RAW_TFLAGS 0x80u   /* judge with the raw flags, not nbd_proto_tflags' */

/* An invariant of the decoders that must hold for every input: a failure is
 * a finding, so abort and let libFuzzer keep the input. */
#define FUZZ_ASSERT(cond)                                                                       \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

#endif
