"""`pxelab assets …` as a user runs it: a local mirror, a user catalog, a pipe and a terminal."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pty
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pxelab.testing.testiso import build_iso

ISO = "testos-1.2-amd64.iso"


async def pxelab(*args: str, tty: bool = False) -> tuple[int, str]:
    """Run `python -m pxelab` with args; (exit code, stdout + stderr)."""
    if tty:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pxelab", *args, stdout=slave, stderr=slave
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = await asyncio.to_thread(os.read, master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        return await proc.wait(), b"".join(chunks).decode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pxelab",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Path]:
    """A static mirror with an ISO and its SHA256SUMS; yields a catalog file pointing at it."""
    served = tmp_path / "mirror"
    served.mkdir()
    (tmp_path / "k").write_bytes(os.urandom(400_000))
    (tmp_path / "i").write_bytes(os.urandom(900_000))
    build_iso(served / ISO, {"boot/vmlinuz": tmp_path / "k", "boot/initrd.gz": tmp_path / "i"})
    digest = hashlib.sha256((served / ISO).read_bytes()).hexdigest()
    (served / "SHA256SUMS").write_text(f"{digest} *{ISO}\n")
    app = web.Application()
    app.router.add_static("/pub/", served)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/pub/"))
        catalog = tmp_path / "catalog.toml"
        catalog.write_text(
            f'[testos]\ndescription = "test OS"\n[testos.amd64]\niso = "{base}testos-*-amd64.iso"\n'
            f'checksums = "{base}SHA256SUMS"\nkernel = "boot/vmlinuz"\ninitrd = "boot/initrd.gz"\n'
        )
        yield catalog


async def test_fetch_then_list_in_a_pipe(mirror: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    common = ["--catalog", str(mirror), "--images-dir", str(images)]
    code, out = await pxelab("assets", "fetch", "testos", "--arch", "x86_64", *common)
    assert code == 0, out
    assert f"{ISO}: downloading" in out
    assert re.search(rf"{ISO}: 1\.3 MiB \(\d+ bytes\), SHA-256 verified", out), out
    assert "\r" not in out  # not a terminal: plain lines
    assert f"cached: {images}/testos/amd64 (initrd, {ISO}, vmlinuz)" in out
    assert (images / "testos" / "amd64" / "vmlinuz").read_bytes() == (tmp_path / "k").read_bytes()
    code, out = await pxelab("assets", "fetch", "testos", *common)
    assert (code, out.strip()) == (
        0,
        f"already cached: {images}/testos/amd64 (initrd, {ISO}, vmlinuz)",
    )
    code, out = await pxelab("assets", "list", "--check", "--images-dir", str(images))
    assert code == 0, out
    rows = [line.split() for line in out.splitlines()]
    assert [(r[0], r[-1]) for r in rows] == [
        ("testos/amd64/initrd", "verified"),
        (f"testos/amd64/{ISO}", "verified"),
        ("testos/amd64/vmlinuz", "verified"),
    ]
    (images / "testos" / "amd64" / "initrd").write_bytes(b"changed")
    code, out = await pxelab("assets", "list", "--images-dir", str(images))
    assert code == 1 and "testos/amd64/initrd" in out and "CHANGED" in out


async def test_fetch_on_a_terminal_draws_a_bar(mirror: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    code, out = await pxelab(
        "assets", "fetch", "testos", "--catalog", str(mirror), "--images-dir", str(images), tty=True
    )
    assert code == 0, out
    assert f"\r{ISO} [" in out and "100%" in out and "ETA" in out


async def test_fetch_errors_exit_1_with_one_line(mirror: Path, tmp_path: Path) -> None:
    code, out = await pxelab("assets", "fetch", "nope", "--catalog", str(mirror))
    assert code == 1
    assert out.startswith("pxelab: error: the catalog has no nope/amd64")
    code, out = await pxelab(
        "assets", "fetch", "testos", "--arch", "s390x", "--catalog", str(mirror)
    )
    assert (code, out.strip()) == (
        1,
        "pxelab: error: unknown architecture 's390x' (use amd64 or arm64)",
    )


async def test_import_with_catalog_paths_and_with_explicit_ones(
    mirror: Path, tmp_path: Path
) -> None:
    iso = tmp_path / "mirror" / ISO
    images = tmp_path / "images"
    code, out = await pxelab(
        "assets", "import", str(iso), "--as", "testos", "--catalog", str(mirror),
        "--images-dir", str(images), "--sha256", hashlib.sha256(iso.read_bytes()).hexdigest(),
    )  # fmt: skip
    assert code == 0, out
    assert f"imported: {images}/testos/amd64 (verified)" in out
    code, out = await pxelab(
        "assets", "import", str(iso), "--as", "mine", "--arch", "aarch64",
        "--kernel", "boot/vmlinuz", "--initrd", "boot/initrd.gz", "--images-dir", str(images),
    )  # fmt: skip
    assert code == 0, out
    assert f"imported: {images}/mine/arm64 (unverified (no --sha256))" in out
    assert (images / "mine" / "arm64" / "initrd").read_bytes() == (tmp_path / "i").read_bytes()
    code, out = await pxelab(
        "assets", "import", str(iso), "--as", "x", "--kernel", "boot/nope", "--initrd",
        "boot/initrd.gz", "--images-dir", str(images),
    )  # fmt: skip
    assert code == 1 and f"{iso}: no file 'boot/nope' in the ISO" in out
    assert not (images / "x").exists()


async def test_ipxe_fills_the_tftp_root(tmp_path: Path) -> None:
    tftp = tmp_path / "tftp"
    arm = tmp_path / "snp-arm64.efi"
    arm.write_bytes(b"MZ arm64 ipxe")
    extra = tmp_path / "grubnetaa64.efi"
    extra.write_bytes(b"MZ grub")
    code, out = await pxelab(
        "assets", "ipxe", "--tftp-root", str(tftp), "--arm64", str(arm), "--file", str(extra)
    )
    assert code == 0, out
    assert sorted(p.name for p in tftp.iterdir()) == [
        "grubnetaa64.efi",
        "ipxe-arm64.efi",
        "ipxe.efi",
        "snponly.efi",
        "undionly.kpxe",
    ]
    for name in ("ipxe.efi", "snponly.efi", "undionly.kpxe"):
        assert (tftp / name).read_bytes() == (Path("/usr/lib/ipxe") / name).read_bytes()
    assert (tftp / "ipxe-arm64.efi").read_bytes() == b"MZ arm64 ipxe"
    code, out = await pxelab(
        "assets", "ipxe", "--tftp-root", str(tmp_path / "t2"), "--from", str(tmp_path)
    )
    assert code == 1 and f"{tmp_path}/ipxe.efi: no such file" in out
    assert not (tmp_path / "t2").exists()


async def test_loaders_copies_and_renames_debians_signed_shim_and_grub(tmp_path: Path) -> None:
    """From this machine's packages (ipxe, shim-signed, grub-efi-amd64-signed: scripts/setup.sh
    installs them): the x86 loaders under the names DHCP hands out; the arm64 GRUB is not
    installed here, so the command names its package (and exits 0: the others are there)."""
    tftp = tmp_path / "tftp"
    code, out = await pxelab("assets", "loaders", "--tftp-root", str(tftp))
    assert code == 0, out
    names = ["grubx64.efi", "ipxe.efi", "shimx64.efi", "snponly.efi", "undionly.kpxe"]
    assert sorted(p.name for p in tftp.iterdir()) == names
    assert (tftp / "shimx64.efi").read_bytes() == Path(
        "/usr/lib/shim/shimx64.efi.signed"
    ).read_bytes()
    assert (tftp / "grubx64.efi").read_bytes() == Path(
        "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
    ).read_bytes()
    assert "missing grubnetaa64.efi (arm64 UEFI" in out
    assert "install the Debian package grub-efi-arm64-signed" in out


async def test_loaders_from_an_unpacked_arm64_package(tmp_path: Path) -> None:
    """--root: a directory Debian packages were unpacked into (dpkg-deb -x), as for arm64 GRUB
    on an amd64 machine; none of them there -> exit 1."""
    root = tmp_path / "root"
    for source, data in (
        ("usr/lib/ipxe/ipxe.efi", b"ipxe"),
        ("usr/lib/ipxe/snponly.efi", b"snp"),
        ("usr/lib/ipxe/undionly.kpxe", b"undi"),
        ("usr/lib/shim/shimx64.efi.signed", b"shim"),
        ("usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", b"grubx64"),
        ("usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed", b"grubaa64"),
    ):
        (root / source).parent.mkdir(parents=True, exist_ok=True)
        (root / source).write_bytes(data)
    tftp = tmp_path / "tftp"
    code, out = await pxelab("assets", "loaders", "--tftp-root", str(tftp), "--root", str(root))
    assert code == 0, out
    assert (tftp / "grubnetaa64.efi").read_bytes() == b"grubaa64"
    assert (tftp / "shimx64.efi").read_bytes() == b"shim"
    assert (tftp / "grubx64.efi").read_bytes() == b"grubx64"
    (root / "usr/lib/shim/shimx64.efi.signed").unlink()
    code, out = await pxelab("assets", "loaders", "--tftp-root", str(tftp), "--root", str(root))
    assert (
        code == 0 and "install the Debian package shim-signed: apt-get install shim-signed" in out
    )
    code, out = await pxelab(
        "assets", "loaders", "--tftp-root", str(tftp), "--root", str(tmp_path / "empty")
    )
    assert code == 1 and out.count("install the Debian package") == 6, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
async def test_interrupted_fetch_caches_nothing_and_the_next_run_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    (tmp_path / "k").write_bytes(os.urandom(3_000_000))
    build_iso(served / ISO, {"boot/vmlinuz": tmp_path / "k", "boot/initrd.gz": tmp_path / "k"})
    iso_bytes = (served / ISO).read_bytes()
    (served / "SHA256SUMS").write_text(f"{hashlib.sha256(iso_bytes).hexdigest()} *{ISO}\n")
    ranges: list[str | None] = []

    async def slow_then_normal(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name != ISO or ranges:  # the second ISO request is served at full speed
            if name == ISO:
                ranges.append(request.headers.get("Range"))
            return web.FileResponse(served / name)
        ranges.append(request.headers.get("Range"))
        resp = web.StreamResponse(headers={"Content-Length": str(len(iso_bytes))})
        await resp.prepare(request)
        for offset in range(0, len(iso_bytes), 64 * 1024):
            await resp.write(iso_bytes[offset : offset + 64 * 1024])
            await asyncio.sleep(0.05)
        return resp

    app = web.Application()
    app.router.add_get("/pub/{name}", slow_then_normal)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/pub/"))
        catalog = tmp_path / "catalog.toml"
        catalog.write_text(
            f'[testos.amd64]\niso = "{base}{ISO}"\nchecksums = "{base}SHA256SUMS"\n'
            'kernel = "boot/vmlinuz"\ninitrd = "boot/initrd.gz"\n'
        )
        images = tmp_path / "images"
        args = ["assets", "fetch", "testos", "--catalog", str(catalog), "--images-dir", str(images)]
        part = images / ".incoming" / "testos" / "amd64" / f"{ISO}.part"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pxelab", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            for _ in range(200):  # up to 10 s for the first bytes to land
                if part.exists() and part.stat().st_size > 200_000:
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(sig)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if sig == signal.SIGINT:
            assert proc.returncode == 130, out.decode()
            assert "interrupted; run the same command again to resume" in out.decode()
        else:  # no chance to clean up: what is on disk must still be safe to resume from
            assert proc.returncode == -signal.SIGKILL
        have = part.stat().st_size
        assert 200_000 < have < len(iso_bytes)
        assert not (images / "testos").exists()
        code, text = await pxelab(*args)
        assert code == 0, text
        assert f"{ISO}: resuming at" in text
        assert ranges == [None, f"bytes={have}-"]
        assert (images / "testos" / "amd64" / ISO).read_bytes() == iso_bytes
        assert not part.exists()
