/*
 * Network addresses on the command line and in config files: "HOST:PORT"
 * with a numeric IPv4 host or "localhost" (127.0.0.1), or "[IPv6]:PORT".
 * Never a resolver lookup: a listener or an agent must not wait on DNS.
 */
#ifndef TM_ADDR_H
#define TM_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parse s into *out. 0, or TM_EINVAL with *out unchanged. Port 0 is
 * accepted (listen on any free port). */
int tm_addr_parse(const char *s, struct sockaddr_storage *out);

/* "127.0.0.1:7707" or "[::1]:7707" into buf. */
void tm_addr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
