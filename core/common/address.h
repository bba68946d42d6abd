/*
 * address.h - the one parser of network addresses in configuration files,
 * command lines and plugin lists. Used by the settings engine
 * (LARS_SETTING_ADDRESS), the services table (parse_address), the lars CLI
 * and lars-admin.
 */
#ifndef LARS_ADDRESS_H
#define LARS_ADDRESS_H

#include <stddef.h>

#include <lars/plugin.h> /* struct lars_address, LARS_ADDRESS_* flags */

/*
 * Parses "host:port" or "[v6]:port" into out (sockaddr, its length and the
 * numeric form "ip:port" / "[v6]:port" as text). Names are resolved once,
 * here (the first answer wins), unless LARS_ADDRESS_NUMERIC (flags: the
 * LARS_ADDRESS_* of lars/plugin.h). Refused: no
 * port, a port outside 1..65535 (0 only with LARS_ADDRESS_PORT0), an IPv6
 * address without brackets, a host that does not resolve. Returns 0 or
 * -EINVAL with one line quoting text in err.
 */
int lars_address_parse(const char *text, unsigned flags, struct lars_address *out, char *err,
                       size_t err_len);

#endif
