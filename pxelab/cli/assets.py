"""`pxelab assets fetch|import|ipxe|loaders|list`: verified boot files into the images dir, boot
loaders into the TFTP root."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from pxelab.assets import AssetError
from pxelab.assets.catalog import Catalog, check_sha256, load_catalog, normalize_arch
from pxelab.assets.ipxe import DEBIAN_IPXE, install_hint, install_ipxe, install_loaders
from pxelab.assets.progress import Progress, human_bytes
from pxelab.assets.store import fetch, import_iso, list_cache
from pxelab.cli.settings import add_settings_flags, settings_from_args
from pxelab.resources import shipped_dir

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def default_catalog() -> Path:
    """The catalog shipped with pxelab (configs/catalog.toml)."""
    return shipped_dir("configs") / "catalog.toml"


def _catalog(args: argparse.Namespace) -> Catalog:
    return load_catalog([default_catalog(), *args.catalog])


def _add_catalog_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="more catalog entries (TOML, like configs/catalog.toml); may be repeated",
    )


def register(commands: Any) -> None:
    """Add `pxelab assets …` to the CLI."""
    assets = commands.add_parser("assets", help="fetch, verify and extract distro boot files")
    sub = assets.add_subparsers(dest="assets_command", metavar="ACTION", required=True)

    p = sub.add_parser("fetch", help="download a catalog distro, check SHA-256, extract")
    p.add_argument("distro", help="a catalog name, e.g. debian-12, ubuntu-24.04, fedora-43")
    p.add_argument("--arch", default="amd64", help="amd64 (x86_64) or arm64 (aarch64)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    _add_catalog_flag(p)
    add_settings_flags(p, ["images_dir"])
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("import", help="put a local ISO into the cache and extract it")
    p.add_argument("iso", type=Path, help="the ISO file")
    p.add_argument("--as", dest="distro", required=True, help="distro name (directory)")
    p.add_argument("--arch", default="amd64", help="amd64 (x86_64) or arm64 (aarch64)")
    p.add_argument("--kernel", help="kernel path in the ISO (default: from the catalog)")
    p.add_argument("--initrd", help="initrd path in the ISO (default: from the catalog)")
    p.add_argument("--sha256", help="the ISO's published SHA-256; then it is 'verified'")
    _add_catalog_flag(p)
    add_settings_flags(p, ["images_dir"])
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("ipxe", help="copy iPXE binaries into the TFTP root")
    p.add_argument(
        "--from",
        dest="debian_dir",
        type=Path,
        default=DEBIAN_IPXE,
        help=f"directory with ipxe.efi, snponly.efi, undionly.kpxe (default {DEBIAN_IPXE})",
    )
    p.add_argument("--arm64", type=Path, metavar="FILE", help="an ARM64 iPXE EFI build")
    p.add_argument(
        "--file", type=Path, action="append", default=[], help="another file to copy as is"
    )
    add_settings_flags(p, ["tftp_root"])
    p.set_defaults(func=cmd_ipxe)

    p = sub.add_parser(
        "loaders",
        help="copy Debian's iPXE, signed shim and signed GRUB into the TFTP root, "
        "under the names pxelab serves",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="where the Debian packages are installed or unpacked (default /)",
    )
    add_settings_flags(p, ["tftp_root"])
    p.set_defaults(func=cmd_loaders)

    p = sub.add_parser("list", help="what is cached, and whether it is verified")
    p.add_argument("--check", action="store_true", help="re-hash every file (slow)")
    add_settings_flags(p, ["images_dir"])
    p.set_defaults(func=cmd_list)


def _fail(message: str) -> int:
    print(f"pxelab: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def cmd_fetch(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        source = _catalog(args).get(args.distro, args.arch)
    except AssetError as exc:
        return _fail(str(exc))
    progress = Progress(sys.stderr)

    async def run() -> tuple[Any, bool]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await fetch(session, source, config.images_dir, progress, args.force)

    try:
        manifest, new = asyncio.run(run())
    except AssetError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\npxelab: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    where = config.images_dir / manifest.distro / manifest.arch
    print(f"{'cached' if new else 'already cached'}: {where} ({', '.join(sorted(manifest.files))})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        arch = normalize_arch(args.arch)
        kernel, initrd = args.kernel, args.initrd
        catalog = _catalog(args)
        source = catalog.sources.get((args.distro, arch))
        if kernel is None or initrd is None:
            source = catalog.get(args.distro, arch)
            if not source.is_iso:
                raise AssetError(
                    f"{args.distro}/{arch} is not an ISO in the catalog: give --kernel and --initrd"
                )
            kernel, initrd = kernel or source.kernel, initrd or source.initrd
        sha = check_sha256(args.sha256, "--sha256") if args.sha256 else None
        manifest = asyncio.run(
            import_iso(
                args.iso,
                args.distro,
                arch,
                kernel,
                initrd,
                config.images_dir,
                sha,
                Progress(sys.stderr),
                source.iso_name if source is not None else None,
            )
        )
    except AssetError as exc:
        return _fail(str(exc))
    state = "verified" if manifest.verified else "unverified (no --sha256)"
    print(f"imported: {config.images_dir / manifest.distro / manifest.arch} ({state})")
    return 0


def cmd_ipxe(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        done = install_ipxe(config.tftp_root, args.debian_dir, args.arm64, tuple(args.file))
    except AssetError as exc:
        return _fail(str(exc))
    for item in done:
        print(f"{config.tftp_root / item.name}  {human_bytes(item.size)}  from {item.source}")
    return 0


def cmd_loaders(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        config.tftp_root.mkdir(parents=True, exist_ok=True)
        report = install_loaders(config.tftp_root, args.root)
    except OSError as exc:
        return _fail(f"key 'tftp_root': cannot create {config.tftp_root}: {exc.strerror or exc}")
    except AssetError as exc:
        return _fail(str(exc))
    for item in report.copied:
        print(f"{config.tftp_root / item.name}  {human_bytes(item.size)}  from {item.source}")
    for loader in report.missing:
        print(
            f"missing {loader.name} ({loader.purpose}): {args.root / loader.source} is not "
            f"there; install the Debian package {loader.package}: {install_hint(loader)}",
            file=sys.stderr,
        )
    return 0 if report.copied else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    rows = list_cache(config.images_dir, args.check)
    if not rows:
        print(f"nothing cached in {config.images_dir}")
        return 0
    for row in rows:
        where = f"{row.distro}/{row.arch}/{row.name}"
        print(f"{where:<60} {human_bytes(row.size):>10}  {row.state}")
    bad = [r for r in rows if r.state in ("CHANGED", "MISSING") or r.state.startswith("BROKEN")]
    return EXIT_FAILED if bad else 0
