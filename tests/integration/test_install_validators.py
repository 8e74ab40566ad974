"""Install data through the installers' own validators, offline, with zero warnings.

Anaconda's `ksvalidator` (pykickstart), cloud-init's `cloud-init schema -c` (Debian's cloud-init)
and `debconf-set-selections -c` (Debian's debconf) check every kickstart, cloud-config and preseed
rendered for the table of hosts in tests/installer_checks.py, and the golden files; systemd's own
host name check (`systemd-firstboot --hostname`, what the installed systems run) checks every
host name they set. Each runs in a fresh network namespace (`unshare --net`): the validators work
offline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pxelab.testing.netns import require_root
from tests.installer_checks import HOSTS, hostnames, rendered

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden"
KSVALIDATOR = Path(sys.executable).with_name("ksvalidator")
VALIDATED = ("kickstart", "preseed", "user-data")
"""The install data that has an installer-side validator (meta-data and network-config are
checked against their schemas in tests/unit)."""

CASES = [(c.id, c.name, c.text) for c in rendered() if c.name in VALIDATED]
HOSTNAMES = sorted({h for c in rendered() for h in hostnames(c.name, c.text)})
"""Every host name the install data of the table sets (one per host, made from its name)."""
GOLDENS = [
    (f"golden-{p.name}", p.name.split("-", 1)[0] if "-data" not in p.name else "user-data", p)
    for p in sorted(GOLDEN.iterdir())
    if p.name.startswith(("kickstart-", "preseed-", "user-data-"))
]


def _validate(name: str, path: Path) -> None:
    """The installer's validator on path: it must exit 0 and say nothing but that it is valid."""
    require_root()
    if name == "kickstart":
        argv = [str(KSVALIDATOR), "-e", str(path)]  # -e: a warning is an error too
        clean = f"\nChecking kickstart file {path}\n\n"
    elif name == "user-data":
        argv = ["cloud-init", "schema", "-c", str(path)]
        clean = f"Valid cloud-config: {path}\n"  # deprecations print here and still exit 0
    else:
        argv = ["debconf-set-selections", "-c", str(path)]  # prints nothing when clean
        clean = ""
    assert shutil.which(argv[0]), f"{argv[0]} is missing: run scripts/setup.sh"
    proc = subprocess.run(["unshare", "--net", *argv], capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert (proc.returncode, output) == (0, clean), (
        f"{' '.join(argv)}:\n{output}\n{path.read_text()}"
    )


@pytest.mark.netns
@pytest.mark.parametrize(("case", "name", "text"), CASES, ids=[c[0] for c in CASES])
def test_rendered_install_data_passes_its_installers_validator(
    tmp_path: Path, case: str, name: str, text: str
) -> None:
    path = tmp_path / case
    path.write_text(text)
    _validate(name, path)


@pytest.mark.netns
@pytest.mark.parametrize(("case", "name", "path"), GOLDENS, ids=[g[0] for g in GOLDENS])
def test_golden_install_data_passes_its_installers_validator(
    case: str, name: str, path: Path
) -> None:
    _validate(name, path)


@pytest.mark.netns
@pytest.mark.parametrize(
    ("name", "text", "complaint"),
    [
        ("kickstart", "text\ntimezone UTC --utc --ntpservers=a\n", "deprecated"),
        ("user-data", "#cloud-config\nusers:\n  - name: a\n    lock-passwd: true\n", "DEPRECATED"),
        (
            "user-data",
            "#cloud-config\nusers:\n  - name: a\n    ssh_authorized_keys: []\n",
            "users.0",
        ),
        ("preseed", "d-i netcfg/get_hostname strng h\n", "Unknown type strng"),
    ],
)
def test_the_validators_catch_errors_and_warnings(
    tmp_path: Path, name: str, text: str, complaint: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AssertionError, match=complaint):
        _validate(name, path)


def _systemd_hostname(root: Path, hostname: str) -> subprocess.CompletedProcess[str]:
    """systemd's host name check (hostname_is_valid), writing only `root`/etc/hostname."""
    require_root()
    assert shutil.which("systemd-firstboot"), "systemd-firstboot is missing: run scripts/setup.sh"
    argv = ["systemd-firstboot", f"--root={root}", f"--hostname={hostname}"]
    return subprocess.run(["unshare", "--net", *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.netns
@pytest.mark.parametrize("hostname", HOSTNAMES)
def test_every_host_name_set_passes_systemds_check(tmp_path: Path, hostname: str) -> None:
    proc = _systemd_hostname(tmp_path, hostname)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "etc" / "hostname").read_text() == f"{hostname}\n"


@pytest.mark.netns
def test_systemd_refuses_the_raw_name_that_the_install_data_made_valid(tmp_path: Path) -> None:
    raw = HOSTS["messy-name"]["name"]
    assert raw not in HOSTNAMES and "rack-7.node-a1" in HOSTNAMES
    proc = _systemd_hostname(tmp_path, raw)
    assert proc.returncode != 0 and "is not valid" in proc.stderr, proc
