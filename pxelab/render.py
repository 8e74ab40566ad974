"""Boot scripts rendered from Jinja2 templates: shipped ones, overridable file by file.

Rendering is all-or-nothing: a template error raises RenderError and no partial text escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from pxelab.errors import PxelabError
from pxelab.inventory import Host
from pxelab.resources import shipped_dir

CONSOLE = {"x86_64": "console=ttyS0", "aarch64": "console=ttyAMA0"}
"""Serial console argument per architecture."""


class RenderError(PxelabError):
    """A template could not be rendered for a host; the message names template and host."""


def image_url(base_url: str, host: Host, name: str) -> str:
    """URL of a host's kernel or initrd: as given if absolute, else under /images/<distro>/<arch>/."""
    if name.startswith(("http://", "https://")):
        return name
    if not host.distro:
        raise RenderError(
            f"host {host.name!r} ({host.source}) has no 'distro', so {name!r} has no image directory"
        )
    return f"{base_url}/images/{host.distro}/{host.image_arch}/{name.lstrip('/')}"


class Renderer:
    """Renders the shipped templates, or same-named files from an override directory."""

    def __init__(self, override_dir: Path | None = None) -> None:
        dirs = [str(override_dir)] if override_dir else []
        dirs.append(str(shipped_dir("templates")))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(dirs),
            autoescape=False,  # iPXE scripts, kernel lines and YAML are not HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, template: str, what: str, **context: Any) -> str:
        try:
            return self.env.get_template(template).render(**context)
        except jinja2.TemplateError as exc:
            where = f" line {exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template {template}{where} for {what}: {exc}") from exc

    def boot_script(self, host: Host, base_url: str) -> str:
        """The iPXE script that boots this host's kernel and initrd from base_url."""
        kernel_url = image_url(base_url, host, host.kernel)
        initrd_url = image_url(base_url, host, host.initrd)
        console = CONSOLE[host.arch]
        return self.render(
            "boot.ipxe.j2",
            f"host {host.name!r}",
            host=host,
            base_url=base_url,
            kernel_url=kernel_url,
            initrd_url=initrd_url,
            initrd_name=initrd_url.rsplit("/", 1)[-1],
            console=console,
            cmdline=" ".join(a for a in (console, host.kernel_args) if a),
        )

    def chain_script(self, base_url: str) -> str:
        """The generic script that makes any iPXE fetch its own per-MAC script."""
        return self.render("chain.ipxe.j2", "/boot.ipxe", base_url=base_url)
