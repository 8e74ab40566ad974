"""The syslog receiver in a lab: real `logger --server` lines (RFC 5424 and RFC 3164) from client
namespaces reach their host's timeline as `log` events; option 7 names the receiver; malformed,
oversized, binary and stranger datagrams are counted and dropped; the daemon serves on.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import NetNs, lab

pytestmark = pytest.mark.netns

RESERVED_MAC = "52:54:00:51:00:05"
LEASED_MAC = "52:54:00:51:00:06"
STRANGER_MAC = "52:54:00:51:00:07"

SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for data in (b"", b"<999>1 - - - - - -", b"\\x00\\x01\\x02binary\\xff", b"<13>" + b"x" * 5000,
             b"<11>\\xff\\xfe not utf-8"):
    s.sendto(data, (sys.argv[1], 514))
"""


def events(port: int, mac: str, stage: str = "log") -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/hosts/{mac}/events?stage={stage}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return list(body["events"])


def wait_for_events(
    ns: NetNs, port: int, mac: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = events_in(ns, port, mac)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def events_in(ns: NetNs, port: int, mac: str) -> list[dict[str, Any]]:
    """The host's log events, asked from inside the server namespace (the API listens there)."""
    url = f"http://127.0.0.1:{port}/api/hosts/{mac}/events?stage=log"
    out = ns.run("curl", "-fsS", url, check=False)
    if out.returncode != 0:
        return []
    return list(json.loads(out.stdout)["events"])


def test_logger_lines_land_on_their_hosts_timeline(tmp_path: Path) -> None:
    with lab() as the_lab:
        reserved_ip = the_lab.ip(50)
        dirs = bootlab.prepare(
            tmp_path, [{"name": "res", "mac": RESERVED_MAC, "ip": reserved_ip, "distro": "demo"}]
        )
        daemon = bootlab.start_daemon(the_lab, dirs, "--log-level", "debug", http_port=8080)
        try:
            assert "syslog receiver on UDP" in daemon.text()
            reserved = the_lab.add_client(RESERVED_MAC)
            reserved.run("ip", "addr", "add", f"{reserved_ip}/24", "dev", "eth0")
            server = the_lab.server_ip
            reserved.run(
                "logger", "--server", server, "--port", "514", "--udp",
                "-t", "anna", "-p", "user.err", "retrieving preseed failed",
            )  # fmt: skip
            reserved.run(
                "logger", "--server", server, "--port", "514", "--udp", "--rfc3164",
                "-t", "main-menu[312]", "-p", "local0.info", "INFO: Menu item 'netcfg' selected",
            )  # fmt: skip

            leased = the_lab.add_client(LEASED_MAC)
            script = tmp_path / "udhcpc.sh"
            script.write_text(
                "#!/bin/sh\n"
                '[ "$1" = bound ] || exit 0\n'
                "ip addr add $ip/$mask dev $interface\n"
                'echo "BOUND $ip opt7=$opt7"\n'
            )
            script.chmod(0o755)
            got = leased.run(
                "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-O", "7",
                "-s", str(script), timeout=30, check=False,
            )  # fmt: skip
            bound = [line for line in got.stdout.splitlines() if line.startswith("BOUND ")]
            assert bound, (got.stdout, got.stderr, daemon.text())
            option7 = bytes(int(p) for p in server.split(".")).hex()
            assert bound[-1].endswith(f"opt7={option7}")  # option 7 (log server): this server
            leased.run("logger", "-n", server, "-P", "514", "-d", "-t", "d-i", "hello from a lease")

            stranger = the_lab.add_client(STRANGER_MAC)
            stranger.run("ip", "addr", "add", f"{the_lab.ip(77)}/24", "dev", "eth0")
            stranger.run("logger", "-n", server, "-P", "514", "-d", "nobody leased me this")
            stranger.run("python3", "-c", SEND, server)
            reserved.run("python3", "-c", SEND, server)

            found = wait_for_events(the_lab.server, 8080, RESERVED_MAC, 2)
            assert [(e["app"], e["severity"], e["text"]) for e in found] == [
                ("anna", 3, "retrieving preseed failed"),
                ("main-menu", 6, "INFO: Menu item 'netcfg' selected"),
            ]
            assert found[0]["detail"] == "[err] anna: retrieving preseed failed"
            assert found[0]["ip"] == reserved_ip and found[1]["facility"] == 16
            lease_lines = wait_for_events(the_lab.server, 8080, LEASED_MAC, 1)
            assert [e["text"] for e in lease_lines] == ["hello from a lease"]

            log = daemon.text()
            assert "nobody leased me this" not in log
            for reason, count in (("malformed", 8), ("oversized", 2), ("unknown-source", 1)):
                assert log.count(f"dropped: {reason}") == count, (reason, log[-3000:])
            assert daemon.proc.poll() is None
            metrics = the_lab.server.run("curl", "-fsS", "http://127.0.0.1:8080/metrics").stdout
            assert 'pxelab_syslog_dropped_total{reason="malformed"} 8.0' in metrics
            assert 'pxelab_boot_events_total{stage="log"} 3.0' in metrics
            page = the_lab.server.run("curl", "-fsS", "http://127.0.0.1:8080/").stdout
            assert '<li class="problem">' in page and "retrieving preseed failed" in page
            timeline = page[page.index('id="timelines"') :]  # newest first, the error highlighted
            assert timeline.index("INFO: Menu item") < timeline.index("retrieving preseed failed")
            assert '<li class="problem"><time' in timeline
        except BaseException:
            print(daemon.text())
            raise
        finally:
            daemon.stop()
