"""`pxelab explain <mac>`: what DHCP, TFTP and HTTP would serve one machine, and why.

Pure apart from an optional look at the TFTP root: the DHCP part asks the real DHCP policy
(`choose_boot`) with a request shaped like each firmware's, so the answer cannot drift from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any

from pxelab.boot.explain6 import dhcp6_answers
from pxelab.boot.images import DEFAULT_ISO
from pxelab.boot.render import INSTALL_DATA, INSTALL_DATA_FOR, Renderer, RenderError
from pxelab.boot.rules import image_choice, is_url
from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode
from pxelab.dhcp.reply import choose_boot
from pxelab.hosts.install import HostState
from pxelab.hosts.inventory import Host


@dataclass(frozen=True)
class DhcpHandout:
    """What the daemon's DHCP hands every client (pxelab.app.dhcp.handout; the boot files then
    follow the TFTP root, pxelab.boot.loaders): the daemon, `pxelab explain` and /api/explain
    use the same one."""

    boot_files: BootFiles = field(default_factory=BootFiles)
    """Boot file per firmware family (GRUB for arm64 when the TFTP root has no arm64 iPXE)."""
    dns: tuple[IPv4Address, ...] = ()
    """DNS servers (option 6)."""
    dns_source: str = ""
    """Where those came from (the setting, resolv.conf, none and why)."""


@dataclass(frozen=True)
class Client:
    """A kind of boot client, as its DHCP request shows it."""

    name: str
    """What `--arch` calls it."""
    label: str
    """A human description."""
    option93: int | None
    """Its client architecture (option 93), None for iPXE (which explain treats by user class)."""
    vendor_class: bytes
    """Its option 60."""
    ipxe: bool = False
    """iPXE's second DHCP round (user class "iPXE")."""


CLIENTS = {
    c.name: c
    for c in (
        Client("bios", "x86 BIOS PXE", 0, b"PXEClient:Arch:00000:UNDI:002001"),
        Client("uefi-x64", "x86-64 UEFI PXE", 7, b"PXEClient:Arch:00007:UNDI:003016"),
        Client("uefi-arm64", "ARM64 UEFI PXE", 11, b"PXEClient:Arch:00011:UNDI:003000"),
        Client("http-x64", "x86-64 UEFI HTTP boot", 16, b"HTTPClient:Arch:00016:UNDI:003016"),
        Client("http-arm64", "ARM64 UEFI HTTP boot", 19, b"HTTPClient:Arch:00019:UNDI:003000"),
        Client("ipxe", "iPXE (second DHCP round)", None, b"PXEClient:Arch:00007:UNDI:003010", True),
    )
}
"""The clients `--arch` can name."""

CLIENTS_FOR_ARCH = {
    "x86_64": ("bios", "uefi-x64", "http-x64", "ipxe"),
    "aarch64": ("uefi-arm64", "http-arm64", "ipxe"),
}
"""The clients a host of each architecture may boot as, when `--arch` is not given."""


def client_request(mac: str, client: Client) -> DhcpPacket:
    """A DHCPDISCOVER as that client sends it."""
    options: list[tuple[int, bytes]] = [
        (OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))),
        (OptionCode.VENDOR_CLASS_ID, client.vendor_class),
    ]
    if client.option93 is not None:
        options.append((OptionCode.CLIENT_ARCH, struct.pack("!H", client.option93)))
    if client.ipxe:
        options.append((OptionCode.USER_CLASS, b"iPXE"))
    return DhcpPacket(
        op=Op.BOOTREQUEST, xid=0, chaddr=bytes.fromhex(mac.replace(":", "")), options=tuple(options)
    )


def dhcp_answers(
    host: Host,
    clients: list[str],
    server_ip: IPv4Address,
    http_port: int,
    boot_files: BootFiles,
    tftp_root: Path | None,
) -> list[dict[str, Any]]:
    """Per client kind: the boot file DHCP hands out, and whether the TFTP root has it."""
    ctx = DhcpContext(
        server_ip=server_ip,
        network=IPv4Network(f"{server_ip}/32"),
        pool_start=server_ip,
        pool_end=server_ip,
        http_port=http_port,
        boot_files=boot_files,
    )
    answers = []
    for name in clients:
        client = CLIENTS[name]
        choice = choose_boot(client_request(host.mac, client), ctx, host)
        tftp: dict[str, Any] | None = None
        relative, via = choice.file, "tftp"
        if relative and "://" in relative:  # UEFI HTTP boot gets the TFTP root over /tftp/
            relative = relative.split("/tftp/", 1)[1] if "/tftp/" in relative else None
            via = "http"
        if relative:
            exists = None if tftp_root is None else (tftp_root / relative).is_file()
            tftp = {"file": relative, "exists": exists, "via": via}
        answers.append(
            {
                "client": name,
                "label": client.label,
                "option93": client.option93,
                "boot_file": choice.file,
                "http_client": choice.http_client,
                "note": choice.note,
                "tftp": tftp,
            }
        )
    return answers


def image_files(host: Host, renderer: Renderer) -> dict[str, Any]:
    """Where the host's kernel, initrd (and Ubuntu's ISO) are served from, and what was tried."""
    if not host.distro:
        return {}
    names = [("kernel", host.kernel), ("initrd", host.initrd)]
    if host.template == "ubuntu":
        names.append(("iso", host.iso or DEFAULT_ISO))
    found: dict[str, Any] = {}
    for what, name in names:
        if is_url(name):
            found[what] = {"name": name, "url": name}
            continue
        choice = image_choice(host, name, renderer.images)
        found[what] = {
            "name": name,
            "path": choice.path,
            "found": choice.found,
            "tried": list(choice.tried),
        }
    return found


def explain(
    host: Host,
    state: HostState,
    renderer: Renderer,
    base_url: str,
    server_ip: IPv4Address,
    http_port: int,
    *,
    arch: str | None = None,
    handout: DhcpHandout | None = None,
    tftp_root: Path | None = None,
    server_ip6: IPv6Address | None = None,
    origins: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything pxelab would serve this host, as JSON-ready data; ValueError for a bad arch.

    `handout` is what the daemon's DHCP hands out (pxelab.app.dhcp.handout decides it). With
    `server_ip6` (IPv6 is served) it also says what DHCPv6 hands out; `origins` says where each
    host value came from (host file, profile, boot API, default)."""
    handout = handout or DhcpHandout()
    if arch is not None and arch not in CLIENTS:
        raise ValueError(f"unknown --arch {arch!r}: use one of {', '.join(CLIENTS)}")
    clients = [arch] if arch else list(CLIENTS_FOR_ARCH[host.arch])
    result: dict[str, Any] = {
        "host": {
            "name": host.name,
            "hostname": host.hostname,
            "mac": host.mac,
            "arch": host.arch,
            "distro": host.distro,
            "template": host.template,
            "pxeboot": host.pxeboot,
            "source": host.source,
        },
        "origins": dict(origins or {}),
        "state": state.to_json(),
        "dhcp": {
            "address": str(host.ip) if host.ip else "from the pool",
            "dns": [str(ip) for ip in handout.dns],
            "dns_source": handout.dns_source,
            "answers": dhcp_answers(
                host, clients, server_ip, http_port, handout.boot_files, tftp_root
            ),
        },
    }
    result["images"] = image_files(host, renderer)
    if server_ip6 is not None:
        kinds = [
            (n, CLIENTS[n].option93, CLIENTS[n].vendor_class, CLIENTS[n].ipxe) for n in clients
        ]
        files = handout.boot_files
        result["dhcp6"] = dhcp6_answers(host, kinds, server_ip6, http_port, files)
    errors: list[str] = []
    try:
        result["urls"] = renderer.urls(host, base_url).as_dict()
        result["script"] = renderer.boot_script(host, base_url, state.state)
    except RenderError as exc:
        errors.append(str(exc))
        result["script"] = None
    data: dict[str, str | None] = {}
    for name in INSTALL_DATA:
        try:
            data[name] = renderer.install_data(host, base_url, name)
        except RenderError as exc:
            errors.append(str(exc))
            data[name] = None
    result["install_data"] = data
    result["install_data_used"] = list(INSTALL_DATA_FOR[host.template])
    result["errors"] = errors
    return result


def as_text(result: dict[str, Any]) -> str:
    """The explanation as the CLI prints it."""
    host = result["host"]
    out = [
        f"host {host['name']} ({host['mac']}, {host['arch']}, template {host['template']}"
        + (f", distro {host['distro']}" if host["distro"] else "")
        + f") from {host['source']}",
        f"install state: {result['state']['state']}",
    ]
    if host.get("hostname", host["name"]) != host["name"]:
        out.append(f"installs as host name {host['hostname']} (made valid from its name)")
    if result.get("origins"):
        out.append("where each value came from:")
        width = max(len(k) for k in result["origins"])
        out += [f"  {k:<{width}}  {v}" for k, v in result["origins"].items()]
    out += [
        "",
        f"DHCP: address {result['dhcp']['address']}",
        "  DNS servers (option 6): "
        + (", ".join(result["dhcp"]["dns"]) or "none")
        + (f" ({result['dhcp']['dns_source']})" if result["dhcp"]["dns_source"] else ""),
    ]
    for answer in result["dhcp"]["answers"]:
        file = answer["boot_file"] or "no boot file"
        note = f" ({answer['note']})" if answer["note"] else ""
        out.append(f"  {answer['label']} [{answer['client']}]: {file}{note}")
        tftp = answer["tftp"]
        if tftp is not None:
            exists = {True: "present", False: "MISSING", None: "not checked"}[tftp["exists"]]
            how = "TFTP" if tftp["via"] == "tftp" else "HTTP /tftp/"
            out.append(f"    {how} serves {tftp['file']}: {exists} in the TFTP root")
    out += ["", *_images_text(result["images"]), ""]
    dhcp6 = result.get("dhcp6")
    if dhcp6 is not None:
        out.append(f"DHCPv6: address {dhcp6['address']} (server {dhcp6['server']})")
        for answer in dhcp6["answers"]:
            note = f" ({answer['note']})" if answer["note"] else ""
            out.append(f"  [{answer['client']}]: {answer['boot_file_url'] or 'no URL'}{note}")
    out.append("")
    for key, url in (result.get("urls") or {}).items():
        if url:
            out.append(f"URL {key}: {url}")
    out += ["", "HTTP boot script:", _indent(result["script"] or "(cannot be rendered)")]
    for name, text in result["install_data"].items():
        used = " (this host's installer reads it)" if name in result["install_data_used"] else ""
        out += [f"install data {name}{used}:", _indent(text or "(cannot be rendered)")]
    for error in result["errors"]:
        out.append(f"error: {error}")
    return "\n".join(out) + "\n"


def _images_text(images: dict[str, Any]) -> list[str]:
    if not images:
        return ["images: none (no distro: kernel and initrd are URLs)"]
    out = ["images (under the images dir, first found of the paths tried):"]
    for what, found in images.items():
        if "url" in found:
            out.append(f"  {what}: {found['url']}")
        elif found["found"]:
            out.append(f"  {what}: {found['path']}")
        elif found["found"] is None:
            out.append(f"  {what}: {found['path']} (not looked up yet)")
        else:
            out.append(f"  {what}: MISSING, tried {', '.join(found['tried'])}")
    return out


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip("\n").splitlines())
