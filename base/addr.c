#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int tm_addr_parse(const char *s, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *port_s;
    size_t hlen;
    if (!s)
        return TM_EINVAL;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return TM_EINVAL;
        hlen = (size_t)(end - s - 1);
        if (hlen == 0 || hlen >= sizeof host)
            return TM_EINVAL;
        memcpy(host, s + 1, hlen);
        port_s = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return TM_EINVAL;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= sizeof host || memchr(s, ':', hlen))
            return TM_EINVAL;
        memcpy(host, s, hlen);
        port_s = colon + 1;
    }
    host[hlen] = '\0';
    size_t plen = strlen(port_s);
    if (plen == 0 || plen > 5 || strspn(port_s, "0123456789") != plen)
        return TM_EINVAL;
    unsigned port = 0;
    for (size_t i = 0; i < plen; i++)
        port = port * 10 + (unsigned)(port_s[i] - '0');
    if (port > 65535)
        return TM_EINVAL;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return TM_EINVAL;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return TM_EINVAL;
    }
    *out = ss;
    return 0;
}

void tm_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a->sin_port));
    } else {
        snprintf(buf, len, "?");
    }
}
