"""The boot rules iPXE, GRUB and HTTP share: where a host's images are, its kernel line, disk or not.

Pure: each answer comes from the host (and its install state) alone.
"""

from __future__ import annotations

from pxelab.errors import PxelabError
from pxelab.hosts.install import InstallState
from pxelab.hosts.inventory import Host

CONSOLE = {"x86_64": "console=ttyS0", "aarch64": "console=ttyAMA0"}
"""Serial console argument per architecture."""


class RenderError(PxelabError):
    """A template could not be rendered for a host; the message names template and host."""


def is_url(name: str) -> bool:
    """A kernel, initrd or ISO given as an absolute http(s) URL rather than a file name."""
    return name.startswith(("http://", "https://"))


def image_path(host: Host, name: str) -> str:
    """A host's image file under the images dir: `<distro>/<arch>/<name>`; RenderError without a
    distro."""
    if not host.distro:
        raise RenderError(
            f"host {host.name!r} ({host.source}) has no 'distro', so {name!r} has no image directory"
        )
    return f"{host.distro}/{host.image_arch}/{name.lstrip('/')}"


def kernel_cmdline(host: Host) -> str:
    """The host's kernel command line: its serial console, then its own `kernel_args`."""
    return " ".join(a for a in (CONSOLE[host.arch], host.kernel_args) if a)


def boots_from_disk(state: InstallState) -> bool:
    """The one-shot install rule: once installed, a host boots its local disk, not the installer."""
    return state is InstallState.INSTALLED
