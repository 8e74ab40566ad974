"""DHCPv6 (RFC 8415, RFC 5970 netboot options): pure codec and server core; the adapter is server."""
