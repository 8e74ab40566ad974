"""The boot rules iPXE, GRUB and HTTP share: where a host's images are, its kernel line, disk or not.

Pure: each answer comes from the host (and its install state) alone.
"""

from __future__ import annotations

from pxelab.boot.images import ImageChoice, ImageIndex, is_url
from pxelab.errors import PxelabError
from pxelab.hosts.install import InstallState
from pxelab.hosts.inventory import Host

__all__ = ["CONSOLE", "RenderError", "boots_from_disk", "image_choice", "image_path", "is_url"]

CONSOLE = {"x86_64": "console=ttyS0", "aarch64": "console=ttyAMA0"}
"""Serial console argument per architecture."""


class RenderError(PxelabError):
    """A template could not be rendered for a host; the message names template and host."""


NO_IMAGES = ImageIndex(None)
"""Looks nothing up: every file is where `pxelab assets` puts it (`<distro>/<amd64|arm64>/`)."""


def image_choice(host: Host, name: str, images: ImageIndex | None = None) -> ImageChoice:
    """Where a host's image file is served from (see pxelab.boot.images for the order);
    RenderError without a distro. The one rule iPXE, GRUB, HTTP, explain and the page use."""
    if not host.distro:
        raise RenderError(
            f"host {host.name!r} ({host.source}) has no 'distro', so {name!r} has no image directory"
        )
    return (images or NO_IMAGES).find(host, name)


def image_path(host: Host, name: str, images: ImageIndex | None = None) -> str:
    """A host's image file under the images dir, e.g. `<distro>/x86_64/<name>`."""
    return image_choice(host, name, images).path


def console_for(host: Host) -> str:
    """The serial console argument, or "" when the host's `kernel_args` set a console."""
    own = any(a.startswith("console=") for a in host.kernel_args.split())
    return "" if own else CONSOLE[host.arch]


def kernel_cmdline(host: Host) -> str:
    """The host's kernel command line: its serial console (unless it sets its own), then its
    `kernel_args`."""
    return " ".join(a for a in (console_for(host), host.kernel_args) if a)


def boots_from_disk(state: InstallState) -> bool:
    """The one-shot install rule: once installed, a host boots its local disk, not the installer."""
    return state is InstallState.INSTALLED
