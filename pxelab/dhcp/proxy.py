"""proxyDHCP (PXE spec §2.2.5): boot information without an address, beside another DHCP server.

Pure: a DISCOVER on port 67 or a REQUEST on port 4011 from a PXE client -> OFFER/ACK with option 60
"PXEClient" (or "HTTPClient"), option 43 telling the client to skip boot server discovery, option
97 echoed, and the boot file; everything else -> NoReply.
"""

from __future__ import annotations

from pxelab.dhcp.context import PXE_PORT, DhcpContext, HostLookup
from pxelab.dhcp.options import encode_ip, vendor_class
from pxelab.dhcp.packet import DhcpPacket, MessageType, OptionCode
from pxelab.dhcp.reply import DhcpReply, NoReply, boot_options, bootreply, proxy_destination

PXE_DISCOVERY_CONTROL = 6
"""PXE vendor option (inside option 43) that says how to find a boot server."""
SKIP_DISCOVERY = 0x08
"""Discovery control bit 3: a boot file is in this offer, download it without discovery."""
PXE_VENDOR_OPTIONS = bytes((PXE_DISCOVERY_CONTROL, 1, SKIP_DISCOVERY, 0xFF))
"""The whole option 43 value sent in proxy replies."""


def proxy_reply(
    request: DhcpPacket,
    kind: MessageType,
    ctx: DhcpContext,
    hosts: HostLookup,
    port: int,
    source: tuple[str, int] | None = None,
) -> DhcpReply | NoReply:
    """The proxyDHCP answer to one request (`port` is where it arrived: 67 or 4011; `source` is
    the (address, port) it came from, which a reply to port 4011 goes back to)."""
    vendor = vendor_class(request)
    if not vendor.startswith((b"PXEClient", b"HTTPClient")):
        return NoReply("proxy mode: not a PXE or HTTP boot client (option 60)")
    if port == PXE_PORT:
        if kind is not MessageType.REQUEST:
            return NoReply(f"proxy mode: {kind.name} on port 4011 (only REQUEST is served)")
        answer = MessageType.ACK
    elif kind is MessageType.DISCOVER:
        answer = MessageType.OFFER
    else:
        return NoReply(f"proxy mode: {kind.name} on port 67 is for the DHCP server")
    host = hosts.lookup(request.mac)
    boot_opts, file, boot = boot_options(request, ctx, host)
    if boot.file is None:
        return NoReply(f"proxy mode: no boot file ({boot.note})")
    options: list[tuple[int, bytes]] = [
        (OptionCode.MESSAGE_TYPE, bytes((answer,))),
        (OptionCode.SERVER_ID, encode_ip(ctx.server_ip)),
    ]
    if not boot.http_client:
        options.append((OptionCode.VENDOR_CLASS_ID, b"PXEClient"))
    options.append((OptionCode.VENDOR_SPECIFIC, PXE_VENDOR_OPTIONS))
    uuid = request.option(OptionCode.CLIENT_UUID)
    if uuid is not None:
        options.append((OptionCode.CLIENT_UUID, uuid))
    options.extend(boot_opts)
    packet = bootreply(request, answer, options, siaddr=ctx.server_ip, file=file)
    destination = proxy_destination(request, port, source)
    return DhcpReply(packet, destination, f"proxyDHCP; {boot.note}" if boot.note else "proxyDHCP")
