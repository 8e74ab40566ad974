"""The TFTP server's `virtual` hook: generated files and a second confined root (GRUB uses both)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pxelab.tftp.server import start_tftp


async def _curl(port: int, name: str, out: Path) -> int:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "-o", str(out), f"tftp://127.0.0.1:{port}/{name}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait()


async def test_generated_and_mounted_files(tmp_path: Path) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    (other / "sub").mkdir(parents=True)
    (root / "plain.bin").write_bytes(b"from the root")
    (other / "sub" / "kernel").write_bytes(os.urandom(100_000))
    (tmp_path / "secret").write_text("outside both roots")
    asked: list[tuple[str, str]] = []

    async def virtual(name: str, client_ip: str) -> bytes | tuple[Path, str] | None:
        asked.append((name, client_ip))
        if name.lstrip("/") == "hello.cfg":
            return b"generated for " + client_ip.encode()
        if name.startswith("mnt/"):
            return other, name[len("mnt/") :]
        return None

    server = await start_tftp(root, "127.0.0.1", 0, virtual=virtual)
    try:
        assert await _curl(server.port, "hello.cfg", tmp_path / "a") == 0
        assert (tmp_path / "a").read_bytes() == b"generated for 127.0.0.1"
        assert await _curl(server.port, "mnt/sub/kernel", tmp_path / "b") == 0
        assert (tmp_path / "b").read_bytes() == (other / "sub" / "kernel").read_bytes()
        assert await _curl(server.port, "plain.bin", tmp_path / "c") == 0
        assert (tmp_path / "c").read_bytes() == b"from the root"
        # the mounted root is confined like the main one
        assert await _curl(server.port, "mnt/../secret", tmp_path / "d") != 0
        assert not (tmp_path / "d").exists() or b"outside" not in (tmp_path / "d").read_bytes()
        assert await _curl(server.port, "mnt/nope", tmp_path / "e") != 0
    finally:
        server.close()
        await server.wait_closed()
    assert ("hello.cfg", "127.0.0.1") in asked
