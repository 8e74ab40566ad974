"""The SQLite state store on disk: a clear error where it cannot be written, and what it wrote
survives a SIGKILL of its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pxelab.state import StoreError
from pxelab.state.sqlite import FILE_NAME, SqliteStore

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
ROOT = Path(__file__).resolve().parents[2]


async def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="file"):
        await SqliteStore(tmp_path / "file" / FILE_NAME).open()


async def test_writes_survive_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from ipaddress import IPv4Address
        from pathlib import Path
        from pxelab.dhcp.leases import Lease, LeaseState
        from pxelab.events import Event
        from pxelab.hosts.install import HostState, InstallState
        from pxelab.state.sqlite import SqliteStore

        async def main():
            store = SqliteStore(Path({str(tmp_path / FILE_NAME)!r}))
            await store.open()
            lease = Lease(IPv4Address("10.0.0.5"), {A!r}, LeaseState.BOUND, 500.0)
            await store.commit_leases([lease], 0.0)
            await store.set_install_state({A!r}, HostState(InstallState.INSTALLED, 1.0, "x", 2))
            await store.add_events([Event(1.0, "dhcp", mac={A!r}, message_type="ACK")])
            print("written", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it died holding the store open, never closed it
    store = SqliteStore(tmp_path / FILE_NAME)
    await store.open()
    try:
        assert [lease.mac for lease in await store.load_leases()] == [A]
        assert store.install_state(A).generation == 2
        assert [e.detail for e in await store.events(A)] == ["ACK"]
    finally:
        await store.close()
