"""The `pxelab` command line: `pxelab serve` and friends; exit 2 with one clear line for a bad setting."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import sys
from collections.abc import Callable, Sequence

from pxelab import __version__
from pxelab.cli import assets, hosts, leases, probe, token
from pxelab.cli.settings import add_settings_flags, settings_from_args
from pxelab.errors import ConfigError
from pxelab.logbatch import BatchHandler

EXIT_BAD_SETTING = 2

Func = Callable[[argparse.Namespace], int]


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
    for register in (
        assets.register,
        probe.register,
        hosts.register,
        token.register,
        leases.register,
    ):
        register(commands)
    return parser


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str, *, queued: bool = False) -> Callable[[], None]:
    """Log to stderr; returns what flushes and stops the log (call it before exiting).

    queued (the daemon): the event loop only appends each record to a deque; a thread formats
    them and writes each batch at once (`pxelab.logbatch`; one write per line otherwise cost
    every HTTP request a syscall on the loop).
    Stopping drains the queue, so a clean stop (SIGTERM, SIGINT) loses no line. Like
    logging.basicConfig, it does nothing when the root logger has handlers already."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_one_line_bad_requests)
    root = logging.getLogger()
    if root.handlers:
        return lambda: None
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(LOG_FORMAT))
    handler: logging.Handler = stream
    stop: Callable[[], None] = stream.flush
    if queued:
        batch = BatchHandler(sys.stderr)
        batch.setFormatter(logging.Formatter(LOG_FORMAT))
        handler, stop = batch, _once(batch.close)
        atexit.register(stop)
        # LOG_FORMAT names none of these: not looking them up per record saves the loop time
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root.setLevel(level.upper())
    root.addHandler(handler)
    return stop


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """action, run by the first call only (the daemon and atexit both call the stop)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


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
    from pxelab.app.daemon import serve

    config = settings_from_args(args)
    stop_logging = setup_logging(config.log_level, queued=True)
    try:
        asyncio.run(serve(config))
    finally:
        stop_logging()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pxelab.testing.demo import run_demo

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
