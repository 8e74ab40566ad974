"""Start-up checks of what the settings point at: directories and templates, each failure one
ConfigError naming its key (blocking: run them off the event loop)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pxelab.app.config import Config
from pxelab.boot.render import Renderer, RenderError
from pxelab.errors import ConfigError


@dataclass(frozen=True)
class NeededDir:
    """A directory a running service needs."""

    key: str
    """The setting that names it."""
    path: Path
    """Where it is."""
    write: bool = False
    """The service writes into it (else it only lists and reads)."""
    create: bool = True
    """Made (with its parents) when missing; else it must exist."""


def needed_dirs(config: Config) -> list[NeededDir]:
    """The directories of the services that are on: hosts and images always (HTTP), the TFTP
    root only with TFTP, the state dir only for the embedded store, the templates dir if set."""
    dirs = [NeededDir("hosts_dir", config.hosts_dir), NeededDir("images_dir", config.images_dir)]
    if config.tftp_port:
        dirs.append(NeededDir("tftp_root", config.tftp_root))
    if config.state_url is None:
        dirs.append(NeededDir("state_dir", config.state_dir, write=True))
    if config.templates_dir is not None:
        dirs.append(NeededDir("templates_dir", config.templates_dir, create=False))
    return dirs


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_dir(need: NeededDir) -> None:
    """Make the directory if it may be made, then list it (and write a file into it when the
    service writes); ConfigError naming the key and the path otherwise."""
    key, path = need.key, need.path
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"key {key!r}: {path} is not a directory")
        if not path.exists():
            if not need.create:
                raise ConfigError(f"key {key!r}: {path} does not exist")
            path.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"key {key!r}: cannot create {path}: {_why(exc)}") from None
    try:
        os.listdir(path)
    except OSError as exc:
        raise ConfigError(f"key {key!r}: cannot read {path}: {_why(exc)}") from None
    if need.write:
        try:
            with tempfile.TemporaryFile(dir=path, prefix=".pxelab-write-check-"):
                pass
        except OSError as exc:
            raise ConfigError(f"key {key!r}: cannot write in {path}: {_why(exc)}") from None


def check_templates(renderer: Renderer) -> None:
    """Compile every template (the templates dir's and the shipped ones): a broken one stops the
    start, naming the file and line, not the first boot that needs it."""
    try:
        renderer.check()
    except RenderError as exc:
        raise ConfigError(f"key 'templates_dir': {exc}") from None


def check_all(config: Config, renderer: Renderer) -> None:
    """Every start-up check, in the order the settings are documented."""
    for need in needed_dirs(config):
        check_dir(need)
    check_templates(renderer)
