"""DHCP: codec (packet, options), arch table, lease table, policy (decide) and the asyncio server."""
