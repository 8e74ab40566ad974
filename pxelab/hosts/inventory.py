"""Host definitions: a directory of pvmlab-style JSON files, indexed by MAC, reloaded live.

`parse_host` is pure; `Inventory` owns the directory and re-reads only the files that changed.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any

from pxelab.dhcp.arch import ARCH_ALIASES, IMAGE_ARCH
from pxelab.errors import HostFileError
from pxelab.hosts.names import hostname_for
from pxelab.hosts.scan import UNREAD, Loaded, rescan

log = logging.getLogger("pxelab.inventory")

KNOWN_KEYS = frozenset(
    {
        "name",
        "arch",
        "mac",
        "ip",
        "ip6",
        "distro",
        "pxeboot",
        "kernel",
        "initrd",
        "ssh_key",
        "kernel_args",
    }
    | {"ssh_keys", "template", "iso", "repo", "loader", "secure_boot"}
)

LOADERS = ("ipxe", "grub")
"""Second-stage loaders: iPXE (HTTP), or GRUB (TFTP; arm64 and Secure Boot default to it)."""

TEMPLATES = ("generic", "ubuntu", "fedora", "debian")
"""Install templates a host may pick with `template` (see the README)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
"""Host names: they reach iPXE scripts, kernel lines and URLs (installers get `hostname_for`)."""
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""Distro names: one path component under the images dir."""
_SSH_KEY = re.compile(
    r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]+ [A-Za-z0-9+/]{4,}={0,3}( [A-Za-z0-9@._+=:/ -]*)?"
)
"""`type base64 [comment]` on one line; no quotes or shell syntax (it reaches kickstart and shell)."""
_IPXE_UNSAFE = ("${", "||", "&&")
"""iPXE expands settings and chains commands with these: never let a host file carry them."""

_HEX_MAC = re.compile(r"[0-9a-f]{12}")
_RELOAD_INTERVAL = 0.5


@functools.lru_cache(maxsize=8192)
def normalize_mac(value: str) -> str:
    """Any common MAC spelling -> `aa:bb:cc:dd:ee:ff`; ValueError if it is not a MAC.

    Memoised (bounded): every boot request normalises its MAC several times on the way."""
    digits = re.sub(r"[:\-.]", "", value.strip().lower())
    if not _HEX_MAC.fullmatch(digits):
        raise ValueError(f"not a MAC address: {value!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class Host:
    """One machine pxelab boots, as read from its host file."""

    name: str
    """Host name; also the key of its per-host URLs."""
    mac: str
    """Boot NIC MAC, normalised to lower case with colons."""
    arch: str = "x86_64"
    """CPU architecture: `x86_64` or `aarch64`."""
    ip: IPv4Address | None = None
    """Reserved IPv4 address, if any; otherwise the DHCP pool assigns one."""
    ip6: IPv6Address | None = None
    """Reserved IPv6 address (DHCPv6, key `ip6`), if any; otherwise the IPv6 pool assigns one."""
    distro: str | None = None
    """Image directory name under the images dir, e.g. `ubuntu-24.04`."""
    pxeboot: bool = True
    """False: DHCP gives an address but no boot file."""
    kernel: str = "vmlinuz"
    """Kernel file name under the host's image directory, or an absolute http(s) URL."""
    initrd: str = "initrd"
    """Initrd file name under the host's image directory, or an absolute http(s) URL."""
    kernel_args: str = ""
    """Extra arguments appended to the kernel command line."""
    ssh_key: str | None = None
    """Public SSH key handed to installers (the first of `ssh_keys`)."""
    ssh_keys: tuple[str, ...] = ()
    """Every public SSH key of the host file (`ssh_key` and `ssh_keys`)."""
    template: str = "generic"
    """Install template: generic, ubuntu, fedora or debian (default: from the distro's name)."""
    iso: str | None = None
    """Ubuntu: the live-server ISO, a file name under the image directory or an http(s) URL."""
    repo: str | None = None
    """Fedora/RHEL: the `inst.repo=` URL (default: the image directory)."""
    loader: str | None = None
    """`ipxe` or `grub`; None lets pxelab choose (GRUB for Secure Boot, and for arm64 without
    an arm64 iPXE binary in the TFTP root)."""
    secure_boot: bool = False
    """The machine boots with UEFI Secure Boot: signed shim, then signed GRUB, all over TFTP."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Every other key of the host file, kept as it was."""
    source: str = ""
    """The file the host came from (for messages)."""

    @property
    def image_arch(self) -> str:
        """Architecture directory name in the images cache (`amd64`, `arm64`)."""
        return IMAGE_ARCH[self.arch]

    @property
    def hostname(self) -> str:
        """The installed system's host name (RFC 1123), made from `name` by `hostname_for`."""
        return hostname_for(self.name)


def _str(data: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is None or isinstance(value, str):
        return value
    raise HostFileError(f"{source}: key {key!r} must be a string, not {type(value).__name__}")


def _check_token(value: str, key: str, source: str) -> str:
    """A value that goes on a kernel or iPXE line as one word: no spaces or iPXE syntax."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise HostFileError(f"{source}: key {key!r} must be one word without spaces")
    if any(bad in value for bad in _IPXE_UNSAFE):
        raise HostFileError(f"{source}: key {key!r} must not contain ${{, || or &&")
    return value


def _ssh_keys(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    keys: list[str] = []
    for key in ("ssh_key", "ssh_keys"):
        value = data.get(key)
        values = [value] if isinstance(value, str) else value
        if value is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise HostFileError(f"{source}: key {key!r} must be a string or a list of strings")
        for text in values:
            if not _SSH_KEY.fullmatch(text.strip()):
                raise HostFileError(
                    f"{source}: key {key!r}: {text[:40]!r} is not one line 'type base64 [comment]'"
                )
            keys.append(text.strip())
    return tuple(keys)


def default_template(distro: str | None) -> str:
    """The install template a distro name implies: ubuntu-*, fedora/rhel/… , debian-*, else generic."""
    family = (distro or "").lower().split("-")[0]
    if family in ("fedora", "rhel", "centos", "rocky", "alma", "almalinux"):
        return "fedora"
    return family if family in ("ubuntu", "debian") else "generic"


def _name(data: Mapping[str, Any], source: str) -> str:
    name = _str(data, "name", source) or Path(source).stem
    if not _NAME.fullmatch(name):
        raise HostFileError(
            f"{source}: key 'name': {name[:70]!r} is not a host name "
            "(letters, digits, '-', '_', '.'; at most 63)"
        )
    return name


def _mac(data: Mapping[str, Any], source: str) -> str:
    raw_mac = _str(data, "mac", source)
    if not raw_mac:
        raise HostFileError(f"{source}: key 'mac' is missing")
    try:
        return normalize_mac(raw_mac)
    except ValueError as exc:
        raise HostFileError(f"{source}: key 'mac': {exc}") from None


def _arch(data: Mapping[str, Any], source: str) -> str:
    raw_arch = (_str(data, "arch", source) or "x86_64").lower()
    if raw_arch not in ARCH_ALIASES:
        raise HostFileError(
            f"{source}: key 'arch': {raw_arch!r} is not one of x86_64, aarch64 (or amd64, arm64)"
        )
    return ARCH_ALIASES[raw_arch]


def _ip(data: Mapping[str, Any], source: str) -> IPv4Address | None:
    raw_ip = _str(data, "ip", source)
    if not raw_ip:
        return None
    try:
        return IPv4Interface(raw_ip).ip  # pvmlab may write "10.0.0.5/24"
    except ValueError:
        raise HostFileError(f"{source}: key 'ip': {raw_ip!r} is not an IPv4 address") from None


def _ip6(data: Mapping[str, Any], source: str) -> IPv6Address | None:
    raw = _str(data, "ip6", source)
    try:
        return IPv6Interface(raw).ip if raw else None  # "2001:db8::5/64" is accepted too
    except ValueError:
        raise HostFileError(f"{source}: key 'ip6': {raw!r} is not an IPv6 address") from None


def _bool(data: Mapping[str, Any], key: str, source: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise HostFileError(f"{source}: key {key!r} must be true or false")
    return value


def _kernel_args(data: Mapping[str, Any], source: str) -> str:
    kernel_args = data.get("kernel_args", "")
    if isinstance(kernel_args, list) and all(isinstance(a, str) for a in kernel_args):
        kernel_args = " ".join(kernel_args)
    if not isinstance(kernel_args, str):
        raise HostFileError(f"{source}: key 'kernel_args' must be a string or a list of strings")
    if any(not c.isprintable() for c in kernel_args):
        raise HostFileError(f"{source}: key 'kernel_args' must be one line of printable text")
    if any(bad in kernel_args for bad in _IPXE_UNSAFE):
        raise HostFileError(f"{source}: key 'kernel_args' must not contain ${{, || or &&")
    return kernel_args.strip()


def _distro(data: Mapping[str, Any], source: str) -> str | None:
    distro = _str(data, "distro", source)
    if distro is not None and (not _WORD.fullmatch(distro) or ".." in distro):
        raise HostFileError(f"{source}: key 'distro': {distro!r} is not a directory name")
    return distro


def _choice(
    data: Mapping[str, Any], key: str, source: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    value = _str(data, key, source) or default
    if value is not None and value not in choices:
        raise HostFileError(f"{source}: key {key!r}: {value!r} is not one of {', '.join(choices)}")
    return value


def parse_host(data: Any, source: str) -> Host:
    """Build a Host from one decoded host file; raise HostFileError naming the file and key."""
    if not isinstance(data, dict):
        raise HostFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
    # checked in this order, so a file with several mistakes always names the same one first
    name, mac, arch, ip = (
        _name(data, source),
        _mac(data, source),
        _arch(data, source),
        _ip(data, source),
    )
    pxeboot = _bool(data, "pxeboot", source, True)
    kernel_args = _kernel_args(data, source)
    for key in ("kernel", "initrd", "iso", "repo"):
        value = _str(data, key, source)
        if value is not None:
            _check_token(value, key, source)
    distro = _distro(data, source)
    template = _choice(data, "template", source, TEMPLATES, default_template(distro))
    ssh_keys = _ssh_keys(data, source)
    loader = _choice(data, "loader", source, LOADERS, None)
    secure_boot = _bool(data, "secure_boot", source, False)
    if secure_boot and loader == "ipxe":
        raise HostFileError(
            f"{source}: key 'loader': Secure Boot needs 'grub' (iPXE is not signed)"
        )
    return Host(
        name=name,
        mac=mac,
        arch=arch,
        ip=ip,
        ip6=_ip6(data, source),
        distro=distro,
        pxeboot=pxeboot,
        kernel=_str(data, "kernel", source) or "vmlinuz",
        initrd=_str(data, "initrd", source) or "initrd",
        kernel_args=kernel_args,
        ssh_key=ssh_keys[0] if ssh_keys else None,
        ssh_keys=ssh_keys,
        template=template or "generic",
        iso=_str(data, "iso", source),
        repo=_str(data, "repo", source),
        loader=loader,
        secure_boot=secure_boot,
        extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        source=source,
    )


def load_host_file(path: Path) -> Host:
    """Read and parse one host file; every failure is a HostFileError naming the file."""
    return parse_host(read_host_json(path), str(path))


def read_host_json(path: Path) -> Any:
    """The decoded JSON of one host file; every failure is a HostFileError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HostFileError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HostFileError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return data


class Inventory:
    """The hosts in a directory of `*.json` files, looked up by MAC, kept in step with the disk.

    A broken file is logged (file and reason) once per change and skipped; the others keep working.
    A file whose MAC, name or address clashes with a host already serving is rejected the same
    way: the serving host stays.
    By default a lookup rescans the directory when the last scan is over 0.5 s old (for the CLI
    and tests); the daemon passes `rescan_on_lookup=False` and calls `refresh` from a worker
    thread, so no lookup on its event loop touches the disk.
    """

    def __init__(
        self,
        directory: Path | None,
        *,
        rescan_on_lookup: bool = True,
        on_change: Callable[[list[Host]], object] | None = None,
    ) -> None:
        self.directory = directory
        self.rescan_on_lookup = rescan_on_lookup
        self.on_change = on_change
        """Called (in the refreshing thread) with the new hosts before lookups see them."""
        self._files: dict[Path, Loaded[Host]] = {}
        self._by_mac: dict[str, Host] = {}
        self._by_name: dict[str, Host] = {}
        self._last_scan = float("-inf")
        self.refresh()

    @property
    def errors(self) -> dict[str, str]:
        """Broken host files and why, by path."""
        return {str(p): e.error for p, e in self._files.items() if e.error}

    def hosts(self) -> list[Host]:
        self._refresh_if_stale()
        return sorted(self._by_mac.values(), key=lambda h: h.name)

    def lookup(self, mac: str) -> Host | None:
        """The host with this MAC (any case or separator), or None."""
        self._refresh_if_stale()
        try:
            return self._by_mac.get(normalize_mac(mac))
        except ValueError:
            return None

    def by_name(self, name: str) -> Host | None:
        self._refresh_if_stale()
        return self._by_name.get(name)

    def reserved(self) -> dict[IPv4Address, str]:
        """Reserved address -> MAC of the host that owns it."""
        self._refresh_if_stale()
        return {h.ip: h.mac for h in self._by_mac.values() if h.ip is not None}

    def reserved6(self) -> dict[IPv6Address, str]:
        """Reserved IPv6 address -> MAC of the host that owns it."""
        self._refresh_if_stale()
        return {h.ip6: h.mac for h in self._by_mac.values() if h.ip6 is not None}

    def load(self, path: Path) -> Host:
        """Read one host file (a subclass may add what the file inherits)."""
        return load_host_file(path)

    def forget_files(self) -> None:
        """Make the next refresh re-read every file (what they inherit changed)."""
        self._files = {p: Loaded(UNREAD, e.value, e.error) for p, e in self._files.items()}

    def _refresh_if_stale(self) -> None:
        if self.rescan_on_lookup and time.monotonic() - self._last_scan >= _RELOAD_INTERVAL:
            self.refresh()

    def refresh(self) -> bool:
        """Re-read changed, new and removed files; True if anything changed.

        Safe in a worker thread while the loop looks hosts up: the new state is built aside and
        put in place by plain assignments."""
        self._last_scan = time.monotonic()
        if self.directory is None:
            return False
        try:
            files = rescan(self.directory, self._files, self.load, log, "host file")
        except OSError as exc:
            log.error("hosts dir %s: cannot list: %s", self.directory, exc)
            return False
        if files is None:
            return False
        by_mac, by_name = self._reindex(files)
        if self.on_change is not None:  # before anyone can look the new hosts up
            self.on_change(list(by_mac.values()))
        self._files, self._by_mac, self._by_name = files, by_mac, by_name
        log.info("inventory: %d hosts from %s", len(by_mac), self.directory)
        return True

    def _reindex(self, files: dict[Path, Loaded[Host]]) -> tuple[dict[str, Host], dict[str, Host]]:
        """MAC and name indexes of `files`. A host already serving keeps its MAC, name and
        address: a file that clashes with it is rejected (logged, and in `errors`), whatever
        the file names. Unchanged serving hosts come first, then changed ones, then new files,
        each group in file-name order."""
        serving = {id(h) for h in self._by_mac.values()}
        sources = {h.source for h in self._by_mac.values()}

        def rank(item: tuple[Path, Loaded[Host]]) -> tuple[int, Path]:
            host = item[1].value
            if host is not None and id(host) in serving:
                return 0, item[0]
            return (1 if str(item[0]) in sources else 2), item[0]

        by_mac: dict[str, Host] = {}
        by_name: dict[str, Host] = {}
        by_ip: dict[IPv4Address, Host] = {}
        for _path, entry in sorted(files.items(), key=rank):
            host = entry.value
            if host is None:
                continue
            entry.error = None
            clash = _clash(host, by_mac, by_name, by_ip)
            if clash is not None:
                entry.error = clash
                log.error("host file rejected: %s", clash)
                continue
            by_mac[host.mac] = by_name[host.name] = host
            if host.ip is not None:
                by_ip[host.ip] = host
        return by_mac, by_name


def _clash(
    host: Host,
    by_mac: dict[str, Host],
    by_name: dict[str, Host],
    by_ip: dict[IPv4Address, Host],
) -> str | None:
    """Why `host` cannot join the hosts indexed so far, or None."""
    for what, other in (
        (f"mac {host.mac}", by_mac.get(host.mac)),
        (f"name {host.name!r}", by_name.get(host.name)),
        (f"ip {host.ip}", by_ip.get(host.ip) if host.ip is not None else None),
    ):
        if other is not None:
            return (
                f"{host.source}: {what} is already served by {other.source}, "
                f"which keeps serving; this file is not used until the clash is fixed"
            )
    return None
