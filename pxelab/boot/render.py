"""Boot scripts and install data rendered from Jinja2 templates: shipped ones, overridable by file.

Rendering is all-or-nothing: a template error raises RenderError and no partial text escapes.
Boot scripts are cached, keyed on everything they are made from (see `Renderer.boot_script`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from pxelab.boot.images import DEFAULT_ISO, ImageIndex
from pxelab.boot.rules import CONSOLE, boots_from_disk, image_path, is_url, kernel_cmdline
from pxelab.boot.rules import RenderError as RenderError  # raised by render, grub and the rules
from pxelab.hosts.install import InstallState
from pxelab.hosts.inventory import Host
from pxelab.resources import shipped_dir

BOOT_TEMPLATES = {
    "generic": "boot.ipxe.j2",
    "ubuntu": "boot-ubuntu.ipxe.j2",
    "fedora": "boot-fedora.ipxe.j2",
    "debian": "boot-debian.ipxe.j2",
}
"""Boot script template per install template (the host's `template`)."""
LOCAL_BOOT_TEMPLATE = "boot-local.ipxe.j2"
"""The script of an installed host: exit to the firmware's next boot device (the disk)."""

INSTALL_DATA = {
    "meta-data": "cloud-init/meta-data.j2",
    "user-data": "cloud-init/user-data.j2",
    "network-config": "cloud-init/network-config.j2",
    "kickstart": "kickstart.ks.j2",
    "preseed": "preseed.cfg.j2",
}
"""Per-host install data: name -> template."""
INSTALL_DATA_FOR = {
    "generic": ("meta-data", "user-data", "network-config"),
    "ubuntu": ("meta-data", "user-data", "network-config"),
    "fedora": ("kickstart",),
    "debian": ("preseed",),
}
"""The install data each template's installer fetches (all of it is served for every host)."""

DEFAULT_USER = "pxelab"
"""The user the installers create (with the host's SSH keys)."""


def image_url(base_url: str, host: Host, name: str, images: ImageIndex | None = None) -> str:
    """URL of a host's kernel or initrd: as given if absolute, else under /images/, where
    `images` finds it (pxelab.boot.images)."""
    return name if is_url(name) else f"{base_url}/images/{image_path(host, name, images)}"


@dataclass(frozen=True)
class HostUrls:
    """Every URL pxelab hands a host: its script, images and install data, and the callback."""

    script: str
    """`/boot?mac=…`: the host's iPXE script."""
    kernel: str
    """Its kernel."""
    initrd: str
    """Its initrd."""
    seed: str
    """cloud-init NoCloud seed directory (ends with `/`): meta-data, user-data, network-config."""
    kickstart: str
    """Its kickstart file."""
    preseed: str
    """Its Debian preseed file."""
    installed: str
    """`POST` here when the install is done: the next boot goes to the local disk."""
    iso: str | None
    """Ubuntu: the live-server ISO (casper `url=`); None without a distro or an `iso` URL."""
    repo: str | None
    """Fedora/RHEL: the install tree (`inst.repo=`); None without a distro or a `repo` URL."""

    def as_dict(self) -> dict[str, str | None]:
        return dict(self.__dict__)


def host_urls(
    host: Host, base_url: str, credential: str | None = None, images: ImageIndex | None = None
) -> HostUrls:
    """The host's URLs on the server at base_url; RenderError when its images have no home.

    Image files are where `images` finds them. With credential (`<generation>.<signature>`, see pxelab.http.auth) the install callback is
    signed: `/api/hosts/<mac>/installed/<credential>` needs no token."""
    iso = repo = None
    if host.distro or is_url(host.iso or ""):
        iso = image_url(base_url, host, host.iso or DEFAULT_ISO, images)
    if host.distro or host.repo:
        repo = host.repo or image_url(base_url, host, "", images)
    return HostUrls(
        script=f"{base_url}/boot?mac={host.mac}",
        kernel=image_url(base_url, host, host.kernel, images),
        initrd=image_url(base_url, host, host.initrd, images),
        seed=f"{base_url}/cloud-init/{host.name}/",
        kickstart=f"{base_url}/kickstart/{host.name}",
        preseed=f"{base_url}/preseed/{host.name}",
        installed=f"{base_url}/api/hosts/{host.mac}/installed"
        + (f"/{credential}" if credential else ""),
        iso=iso,
        repo=repo,
    )


def _yaml(value: Any) -> str:
    """A YAML scalar or flow collection (JSON is YAML): quotes whatever needs quoting."""
    return json.dumps(value, ensure_ascii=False)


def _line(value: Any) -> str:
    """A value that must stay on its line (preseed, kickstart, shell): refuse control characters."""
    if value is None:
        raise ValueError("a value the template needs is missing (no distro, iso or repo?)")
    text = str(value)
    if any(not c.isprintable() for c in text):
        raise ValueError(f"{text[:40]!r} must be one line of printable text")
    return text


TEMPLATE_CHECK_INTERVAL = 1.0
"""Seconds between two looks at the template files for changes (a stat of each loaded one)."""
SCRIPT_CACHE_SIZE = 16384
"""Boot scripts kept at most; the cache starts afresh when it is full."""


@dataclass(frozen=True)
class _Cached:
    """A rendered boot script and what it was made from, beyond its key."""

    host: Host
    """The host definition it was rendered for."""
    credential: str | None
    """The signed callback credential in it (install generation and server secret)."""
    images: int | None
    """The image index's version: where the host's kernel and initrd were found."""
    script: str
    """The script."""


class Renderer:
    """Renders the shipped templates, or same-named files from an override directory."""

    def __init__(
        self,
        override_dir: Path | None = None,
        images: ImageIndex | None = None,
        *,
        check_interval: float = TEMPLATE_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.images = images or ImageIndex(None)
        """Where hosts' image files are (pxelab.boot.images); without one, pxelab's own layout."""
        self.signer: Callable[[str], str | None] | None = None
        """MAC -> its signed callback credential; set by the HTTP app (None: unsigned URLs)."""
        self.check_interval = check_interval
        """Seconds between two checks of the template files for changes (0: every script)."""
        self._clock = clock
        self._override_dir = override_dir
        self._scripts: dict[tuple[str, str, str, str, int], _Cached] = {}
        self._checked = clock()
        self._dir_stamp = self._override_stamp()
        self.syslog_port = 0
        """The syslog receiver's UDP port (set by the daemon); 0: installers are not told."""
        dirs = [str(override_dir)] if override_dir else []
        dirs.append(str(shipped_dir("templates")))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(dirs),
            autoescape=False,  # iPXE scripts, kernel lines and YAML are not HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.env.filters["yaml"] = _yaml
        self.env.filters["line"] = _line

    def check(self) -> None:
        """Compile every template it can find (blocking: reads them); RenderError names the first
        that is unreadable or broken, with its file and line."""
        loader = self.env.loader
        names = loader.list_templates() if loader is not None else []
        for name in names:
            if not name.endswith(".j2"):
                continue
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                where = exc.filename or name
                raise RenderError(f"template {where} line {exc.lineno}: {exc.message}") from None
            except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
                raise RenderError(f"template {name}: cannot load: {exc}") from None

    def render(self, template: str, what: str, **context: Any) -> str:
        try:
            return self.env.get_template(template).render(**context)
        except jinja2.TemplateError as exc:
            where = f" line {exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template {template}{where} for {what}: {exc}") from exc
        except ValueError as exc:  # from the `line` filter
            raise RenderError(f"template {template} for {what}: {exc}") from exc

    def context(self, host: Host, base_url: str) -> dict[str, Any]:
        """The variables every host template gets (see the README's template section)."""
        urls = self.urls(host, base_url)
        return {
            "host": host,
            "base_url": base_url,
            "urls": urls,
            "kernel_url": urls.kernel,
            "initrd_url": urls.initrd,
            "initrd_name": urls.initrd.rsplit("/", 1)[-1],
            "installed_url": urls.installed,
            "console": CONSOLE[host.arch],
            "cmdline": kernel_cmdline(host),
            "user": DEFAULT_USER,
            "instance_id": f"{host.name}-{host.mac.replace(':', '')}",
            "syslog": self.syslog(base_url),
        }

    def syslog(self, base_url: str) -> dict[str, str | int] | None:
        """Where installers send their logs: this server (as the client reached it), or None."""
        host = urlsplit(base_url).hostname
        if not self.syslog_port or not host:
            return None
        return {"host": host, "port": self.syslog_port}

    def urls(self, host: Host, base_url: str) -> HostUrls:
        """host_urls, with the install callback signed when the renderer has a signer."""
        credential = self.signer(host.mac) if self.signer else None
        return host_urls(host, base_url, credential, self.images)

    def boot_template(self, host: Host, state: InstallState) -> str:
        """The template that makes the host's script in this state."""
        if boots_from_disk(state):
            return LOCAL_BOOT_TEMPLATE
        return BOOT_TEMPLATES[host.template]

    def boot_script(
        self, host: Host, base_url: str, state: InstallState = InstallState.INSTALL
    ) -> str:
        """The host's iPXE script: its installer (or kernel) until installed, then local boot.

        Cached on the host definition, base URL, install state, signed callback credential (it
        names the install generation), where its images were found (`ImageIndex.version`),
        template and syslog port; a changed template file (an override, or one it includes) empties the cache
        within `check_interval` seconds."""
        template = self.boot_template(host, state)
        self._check_templates()
        credential = self.signer(host.mac) if self.signer else None
        key = (host.mac, base_url, state.value, template, self.syslog_port)
        cached = self._scripts.get(key)
        images = self.images.version
        if (
            cached is not None
            and cached.credential == credential
            and cached.images == images
            and (cached.host is host or cached.host == host)
        ):
            return cached.script
        context = self.context(host, base_url)
        script = self.render(template, f"host {host.name!r}", state=state.value, **context)
        if len(self._scripts) >= SCRIPT_CACHE_SIZE:
            self._scripts.clear()
        if images is not None:  # None: looked up on the disk at each call, nothing to key on
            self._scripts[key] = _Cached(host, credential, images, script)
        return script

    def _check_templates(self) -> None:
        """Empty the script cache when a loaded template changed or an override appeared."""
        now = self._clock()
        if now - self._checked < self.check_interval:
            return
        self._checked = now
        stamp = self._override_stamp()
        changed = stamp != self._dir_stamp
        self._dir_stamp = stamp
        cache = self.env.cache
        if not changed and cache is not None:
            changed = not all(t.is_up_to_date for t in list(cache.values()))
        if changed:
            self._scripts.clear()
            if cache is not None:
                cache.clear()

    def _override_stamp(self) -> tuple[int, ...]:
        """mtimes of the override directory and its subdirectories: a new override shows there."""
        if self._override_dir is None:
            return ()
        stamps = []
        for directory in (self._override_dir, *_subdirs(self._override_dir)):
            try:
                stamps.append(os.stat(directory).st_mtime_ns)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)

    def install_data(self, host: Host, base_url: str, name: str) -> str:
        """One piece of the host's install data (a key of INSTALL_DATA)."""
        return self.render(
            INSTALL_DATA[name], f"host {host.name!r} {name}", **self.context(host, base_url)
        )

    def chain_script(self, base_url: str) -> str:
        """The generic script that makes any iPXE fetch its own per-MAC script."""
        return self.render("chain.ipxe.j2", "/boot.ipxe", base_url=base_url)


def _subdirs(directory: Path) -> list[Path]:
    """The directories directly under `directory` (templates live one level deep at most)."""
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
