#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} tm__errors[] = {
    {TM_ECORRUPT, "TM_ECORRUPT", "data corrupted: a checksum does not verify"},
    {TM_EVERSION, "TM_EVERSION", "unsupported format version"},
    {TM_ETOOBIG, "TM_ETOOBIG", "over the size limit"},
    {TM_ECLOSED, "TM_ECLOSED", "already closed"},
    {TM_EFOREIGN, "TM_EFOREIGN", "file belongs to another journal"},
    {TM_ERETIRED, "TM_ERETIRED", "position was retired"},
    {TM_EFAILED, "TM_EFAILED", "refused after an earlier I/O failure"},
    {TM_EINVAL, "TM_EINVAL", "invalid argument"},
    {TM_ENOTFOUND, "TM_ENOTFOUND", "not found"},
    {TM_ENOPOINT, "TM_ENOPOINT", "no such recovery point"},
};

#define TM__NERRORS (sizeof tm__errors / sizeof tm__errors[0])

const char *tm_strerror(int code)
{
    for (size_t i = 0; i < TM__NERRORS; i++)
        if (tm__errors[i].code == code)
            return tm__errors[i].text;
    if (code < 0 && code > TM_E__BASE)
        return strerror(-code);
    return "unknown error";
}

const char *tm_errname(int code)
{
    static const struct {
        int e;
        const char *n;
    } sys[] = {
        {EIO, "EIO"},       {ENOSPC, "ENOSPC"}, {ENOENT, "ENOENT"}, {EEXIST, "EEXIST"},
        {EACCES, "EACCES"}, {EAGAIN, "EAGAIN"}, {EINVAL, "EINVAL"}, {ENOMEM, "ENOMEM"},
        {EBADF, "EBADF"},   {EROFS, "EROFS"},   {EDQUOT, "EDQUOT"}, {ETIMEDOUT, "ETIMEDOUT"},
    };
    for (size_t i = 0; i < TM__NERRORS; i++)
        if (tm__errors[i].code == code)
            return tm__errors[i].name;
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
        if (-sys[i].e == code)
            return sys[i].n;
    return "EUNKNOWN";
}
