#include "mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static tm_allocator_t tm__alloc = {malloc, realloc, free};

void tm_set_allocator(const tm_allocator_t *a)
{
    if (a)
        tm__alloc = *a;
    else
        tm__alloc = (tm_allocator_t){malloc, realloc, free};
}

void *tm_malloc(size_t size)
{
    return tm__alloc.malloc(size ? size : 1);
}

void *tm_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = tm_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *tm_realloc(void *ptr, size_t size)
{
    return tm__alloc.realloc(ptr, size ? size : 1);
}

char *tm_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = tm_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void tm_free(void *ptr)
{
    int saved = errno;
    tm__alloc.free(ptr);
    errno = saved;
}

int tm_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        n *= 2;
    }
    void *p = tm_realloc(*arr, n * elem);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}
