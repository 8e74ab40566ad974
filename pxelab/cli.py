"""The `pxelab` command line: `pxelab serve` and friends; exit 2 with one clear line for a bad setting."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pxelab import __version__
from pxelab.config import Config, build_config, read_toml
from pxelab.errors import ConfigError

EXIT_BAD_SETTING = 2

# flag -> config key; every flag overrides the same key of the TOML file.
SERVE_FLAGS: list[tuple[str, str, str]] = [
    ("--interface", "IF", "answer DHCP on this interface (without it: TFTP and HTTP only)"),
    ("--address", "IP", "this server's address on --interface (default: the interface's own)"),
    ("--dhcp-range", "FIRST-LAST", "DHCP pool, e.g. 10.0.0.100-10.0.0.200"),
    ("--router", "IP", "default gateway handed to DHCP clients"),
    ("--dns", "IP[,IP]", "DNS servers handed to DHCP clients"),
    ("--lease-time", "SECONDS", "DHCP lease time"),
    ("--dhcp-port", "N", "DHCP server port (default 67)"),
    ("--dhcp-mode", "full|proxy", "full DHCP, or proxyDHCP beside an existing DHCP server"),
    (
        "--unknown-macs",
        "serve|ignore",
        "answer MACs missing from the inventory (default: full mode)",
    ),
    ("--subnets", "NET=FIRST-LAST[@ROUTER][;...]", "pools for subnets behind DHCP relays"),
    ("--dhcp-interfaces", "IF[,IF]", "more interfaces DHCP answers on (pools from --subnets)"),
    ("--router-advertisements", "on|off", "answer IPv6 router solicitations (default on)"),
    ("--hosts-dir", "DIR", "directory of JSON host files (default ~/.pxelab/hosts)"),
    (
        "--images-dir",
        "DIR",
        "kernels, initrds and ISOs served at /images/ (default ~/.pxelab/images)",
    ),
    ("--tftp-root", "DIR", "TFTP root with the iPXE binaries (default ~/.pxelab/tftp)"),
    ("--tftp-address", "IP", "address the TFTP server binds to"),
    ("--tftp-port", "N", "TFTP port (default 69; 0 turns TFTP off)"),
    ("--tftp-max-sessions", "N", "TFTP transfers in flight at most (default 512)"),
    ("--tftp-max-per-client", "N", "TFTP transfers in flight per client IP (default 16)"),
    ("--tftp-windowsize-max", "N", "largest TFTP windowsize granted (default 64)"),
    ("--http-address", "IP", "address the HTTP server binds to (default 0.0.0.0)"),
    ("--http-port", "N", "HTTP port (default 8080; 0 picks a free port)"),
    ("--state-dir", "DIR", "state directory (default ~/.pxelab/state)"),
    ("--templates-dir", "DIR", "templates here override the shipped ones"),
    ("--log-level", "LEVEL", "debug, info, warning or error"),
    ("--user", "NAME", "drop root to this user once the ports are bound"),
]


COMMAND_MODULES: tuple[str, ...] = ("pxelab.assets.cli", "pxelab.dhcp.probe", "pxelab.hosts_cli")
"""Modules that add subcommands: each has `register(commands)`, and sets `func` on its parser."""

Func = Callable[[argparse.Namespace], int]


def add_settings_flags(parser: argparse.ArgumentParser, keys: Iterable[str] | None = None) -> None:
    """`--config FILE` and the flags of the given config keys (all when None)."""
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file")
    wanted = None if keys is None else set(keys)
    for flag, metavar, help_text in SERVE_FLAGS:
        if wanted is None or flag[2:].replace("-", "_") in wanted:
            parser.add_argument(flag, metavar=metavar, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Config:
    """The Config from `--config` and the flags present on args; ConfigError names the key."""
    file_settings: dict[str, Any] = {}
    source = "command line"
    if args.config:
        file_settings = read_toml(args.config)
        source = str(args.config)
    overrides = {
        key: getattr(args, key)
        for key in (flag[2:].replace("-", "_") for flag, _, _ in SERVE_FLAGS)
        if hasattr(args, key)
    }
    return build_config(file_settings, overrides, source)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pxelab", description="Network-boot lab machines and VMs: DHCP, TFTP and HTTP."
    )
    parser.add_argument("--version", action="version", version=f"pxelab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the DHCP, TFTP and HTTP servers")
    add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)
    demo = commands.add_parser(
        "demo", help="boot a QEMU VM from pxelab (a private namespace as root, else user-mode)"
    )
    demo.add_argument("--timeout", type=float, default=300, help="seconds to wait for the boot")
    demo.add_argument(
        "--network",
        choices=["netns", "user"],
        help="netns (root: DHCP, TFTP, HTTP in a namespace) or user (QEMU user-mode, HTTP only); "
        "default: netns as root, else user",
    )
    demo.set_defaults(func=cmd_demo)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_one_line_bad_requests)


def _one_line_bad_requests(record: logging.LogRecord) -> bool:
    """A malformed HTTP request is the client's fault: one warning line, not a traceback."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        reason = " ".join(str(exc.message).split())[:160]
        record.msg, record.args, record.exc_info = f"{record.getMessage()}: {reason}", (), None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    from pxelab.daemon import serve

    config = settings_from_args(args)
    setup_logging(config.log_level)
    asyncio.run(serve(config))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pxelab.demo import run_demo

    setup_logging("warning")
    try:
        return run_demo(args.network, args.timeout)
    except (RuntimeError, FileNotFoundError) as exc:  # missing tools or rights
        print(f"pxelab: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func: Func | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_SETTING
    try:
        return func(args)
    except ConfigError as exc:
        print(f"pxelab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
