"""Where a host's kernel, initrd, ISO and install tree are under the images dir, in one fixed order.

pvmlab writes `<distro>/<x86_64|aarch64>/`, `pxelab assets` writes `<distro>/<amd64|arm64>/`, and
pvmlab's older seed wrote `<distro>/`: the first that holds the file wins. `ImageIndex` answers from
memory; its `refresh` (the daemon calls it in a worker thread) does the stats.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pxelab.dhcp.arch import IMAGE_ARCH
from pxelab.hosts.inventory import Host

DEFAULT_ISO = "live-server.iso"
"""Ubuntu ISO file name under the host's image directory when the host file names none."""


def is_url(name: str) -> bool:
    """A kernel, initrd or ISO given as an absolute http(s) URL rather than a file name."""
    return name.startswith(("http://", "https://"))


def image_dirs(distro: str, arch: str) -> tuple[str, ...]:
    """The image directories tried for a distro and arch, first match wins: the host file's
    own spelling (pvmlab's `x86_64`, `aarch64`), Debian's (`amd64`, `arm64`, the layout
    `pxelab assets` writes), then the distro directory itself."""
    return (f"{distro}/{arch}/", f"{distro}/{IMAGE_ARCH[arch]}/", f"{distro}/")


@dataclass(frozen=True)
class ImageChoice:
    """Which path under the images dir a host's file is served from, and what was tried."""

    path: str
    """The path under the images dir (no leading `/`) that URLs and GRUB use."""
    found: bool | None
    """True: that file exists; False: none of `tried` exists (then `path` is the layout
    `pxelab assets` writes); None: not looked at yet."""
    tried: tuple[str, ...]
    """Every candidate path, in the order they are tried."""


Key = tuple[str, str, str]
"""(distro, arch, file name; "" for the image directory itself)."""


def candidates(key: Key) -> tuple[str, ...]:
    """The paths tried for one key, in order."""
    distro, arch, name = key
    return tuple(d + name.lstrip("/") for d in image_dirs(distro, arch))


def decide(key: Key, exists: Iterable[bool]) -> ImageChoice:
    """The first candidate that exists (one bool per candidate, in order), else the Debian
    layout `pxelab assets` writes. Pure."""
    tried = candidates(key)
    for path, there in zip(tried, exists, strict=False):
        if there:
            return ImageChoice(path, True, tried)
    return ImageChoice(tried[1], False, tried)


def look(root: Path, key: Key) -> ImageChoice:
    """decide(), with the stats done now (blocking: call it off the event loop)."""
    want_dir = key[2] == ""

    def there(path: str) -> bool:
        full = os.path.join(root, path)
        return os.path.isdir(full) if want_dir else os.path.isfile(full)

    return decide(key, (there(p) for p in candidates(key)))


def host_keys(host: Host) -> list[Key]:
    """The image files a host may ask for: kernel, initrd, its ISO and its image directory."""
    if not host.distro:
        return []
    names = [host.kernel, host.initrd, host.iso or DEFAULT_ISO, ""]
    return [(host.distro, host.arch, n) for n in names if not is_url(n)]


class ImageIndex:
    """Image choices for the hosts, from memory.

    With `live` (the CLI, tests) a choice is looked up on the disk when asked for. Without it
    (the daemon) `refresh`, in a worker thread, stats every host's candidates and replaces the
    table; a key it has not seen yet answers the Debian layout with `found` None, and is looked
    up at the next refresh. Without an images dir nothing is looked up.
    """

    def __init__(self, root: Path | None, *, live: bool = False) -> None:
        self.root = root
        self.live = live
        self._table: dict[Key, ImageChoice] = {}
        self._missed: set[Key] = set()
        self._lock = threading.Lock()  # the loop adds misses while a worker thread takes them
        self._version = 0

    @property
    def version(self) -> int | None:
        """One more each time `refresh` changes an answer, so callers can cache what they made
        from the answers; None when `live` (every answer is looked up on the disk)."""
        return None if self.live else self._version

    def find(self, host: Host, name: str) -> ImageChoice:
        """Where `name` (a file name, or "" for the directory) of this host is served from."""
        key = (host.distro or "", host.arch, name)
        choice = self._table.get(key)
        if choice is not None:
            return choice
        if self.root is None:
            pass
        elif self.live:
            return look(self.root, key)
        else:
            with self._lock:
                self._missed.add(key)
        tried = candidates(key)
        return ImageChoice(tried[1], None, tried)

    def refresh(self, hosts: Iterable[Host]) -> bool:
        """Look every host's files up again (blocking); True when an answer changed."""
        if self.root is None:
            return False
        with self._lock:
            missed, self._missed = self._missed, set()
        keys = {k for h in hosts for k in host_keys(h)} | missed
        table = {key: look(self.root, key) for key in keys}
        changed = table != self._table
        self._table = table
        if changed:
            self._version += 1
        return changed
