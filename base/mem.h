/*
 * The one allocation entry point (after libuv's uv__malloc). Every project
 * allocation goes through these, so a test can install an allocator that
 * fails on demand and check each out-of-memory path.
 */
#ifndef TM_MEM_H
#define TM_MEM_H

#include <stddef.h>

typedef struct tm_allocator {
    void *(*malloc)(size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
} tm_allocator_t;

/* Install an allocator; NULL restores the C library's. Not thread-safe:
 * call it before any other thread allocates. */
void tm_set_allocator(const tm_allocator_t *a);

void *tm_malloc(size_t size);
void *tm_calloc(size_t n, size_t size);
void *tm_realloc(void *ptr, size_t size);
char *tm_strdup(const char *s);
/* Make the array *arr (of elements of size elem, capacity *cap) hold at
 * least need elements, doubling from 8. 0, or -ENOMEM with *arr untouched. */
int tm_grow(void **arr, size_t *cap, size_t need, size_t elem);

/* Frees ptr; preserves errno so it can sit between a failing call and its report. */
void tm_free(void *ptr);

#endif
