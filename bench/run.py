"""`make bench`: every benchmark scenario against pxelab and its reference server, in one run.

Installs the reference servers and clients it needs (apt-get), runs each scenario script with a
time budget (SIGINT, then SIGKILL, on overrun, so the scripts' cleanup runs), gathers their rows
into one table, prints it and writes docs/BENCHMARKS.md with the machine and the exact commands.

A scenario script gives its rows either as JSON lines appended to the file named by
$PXELAB_BENCH_ROWS (see bench/benchlib.py `Row` and `emit`), or as its printed markdown table,
which an adapter here turns into rows. Needs root (namespaces); not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import ROOT, ROWS_ENV, Row, ratio, sharing

TOTAL_BUDGET = 28 * 60
"""Seconds for the whole run: the scenarios' budgets add up to 26.5 minutes (the storm up to
1,000 machines and DHCP on PostgreSQL made it longer than the 15 minutes of before), so `make
bench` ends within 30 minutes on 2 cores and skips nothing; `--quick` runs in under 3."""
QUICK_BUDGET = 175
"""Seconds for `--quick`: every row once, under 3 minutes (on a quiet 2-core machine; a loaded
one runs out of budget and says which scenarios it skipped or cut)."""

WORK = ROOT / "build" / "bench"
"""Each scenario's output, rows and status (`--report-only` rebuilds the report from them)."""

TOOLS = {
    "dnsmasq": "dnsmasq-base",  # the binary alone: the `dnsmasq` package also starts a service
    "nginx": "nginx-light",
    "atftpd": "atftpd",
    "atftp": "atftp",
    "curl": "curl",
    "wrk": "wrk",
    "perfdhcp": "kea-admin",
    "hyperfine": "hyperfine",
}
"""Command -> the Debian package that has it."""


def markdown_table(text: str) -> list[dict[str, str]]:
    """The last markdown table in text, as rows of header -> cell."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    if not tables or len(tables[-1]) < 2:
        return []
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in tables[-1]]
    header = cells[0]
    return [dict(zip(header, row, strict=False)) for row in cells[2:]]


def number(text: str) -> float | None:
    found = re.match(r"\s*(\d[\d.]*)", text)
    return float(found.group(1)) if found else None


_DHCP_STEP = re.compile(
    r"^\s+(pxelab|dnsmasq --leasefile-ro|dnsmasq)\s+asked\s+(\d+)/s:\s+([\d.]+) DORA/s, "
    r"drops\s+([\d.]+)%, offer ([\d.]+ ms), ack ([\d.]+ ms)",
    re.M,
)


def dhcp_progress(out: str) -> dict[str, dict[str, str]]:
    """dhcp_bench.py's table rebuilt from its per-step lines (when it was stopped early)."""
    best: dict[str, dict[str, str]] = {}
    for name, asked, achieved, drops, offer, ack in _DHCP_STEP.findall(out):
        best.setdefault(name, {"highest rate asked at <= 1% drops": "none (over 1%)"})
        if float(drops) <= 1.0:
            best[name] = {
                "highest rate asked at <= 1% drops": f"{asked}/s",
                "DORA/s achieved": achieved,
                "DISCOVER-OFFER avg": offer,
                "REQUEST-ACK avg": ack,
            }
    return best


def dhcp_rows(out: str) -> list[Row]:
    """bench/dhcp_bench.py's table: per server, the DORA/s achieved at <= 1% drops."""
    by = {r.get("server", ""): r for r in markdown_table(out)} or dhcp_progress(out)

    def rate(row: dict[str, str]) -> float | None:
        return number(row.get("DORA/s achieved", row.get("DORA/s at <= 1% drops", "")))

    def detail(name: str, row: dict[str, str]) -> str:
        asked = row.get("highest rate asked at <= 1% drops", "")
        return (
            f"{name}: asked {asked}, offer {row.get('DISCOVER-OFFER avg', '?')}, "
            f"ack {row.get('REQUEST-ACK avg', '?')}"
            if asked and not asked.startswith("none")
            else f"{name}: {asked or '?'}"
        )

    px = by.get("pxelab", {})
    ours = rate(px)
    rows = []
    for ref, target, want in (
        ("dnsmasq", ">= 3x", 3.0),
        ("dnsmasq --leasefile-ro", ">= 1x", 1.0),
    ):
        other = by.get(ref, {})
        theirs = rate(other)
        r = ratio(ours, theirs) if ours is not None and theirs else None
        rows.append(
            Row(
                f"DHCP perfdhcp (relay, veth): vs {ref}"
                + (" with its lease file" if ref == "dnsmasq" else ""),
                f"{ours:.0f} DORA/s" if ours is not None else "none at <= 1% drops",
                f"{theirs:.0f} DORA/s" if theirs is not None else "none at <= 1% drops",
                r,
                target,
                None if r is None else r >= want,
                f"best step at <= 1% drops; {detail('pxelab', px)}; {detail(ref, other)}",
            )
        )
    return rows if by else []


_PG_STEP = re.compile(
    r"^\s+(pxelab postgres x2 both|pxelab postgres x2|pxelab postgres sync|pxelab postgres|pxelab"
    r"|dnsmasq)\s+asked\s+"
    r"(\d+)/s:\s+([\d.]+) DORA/s, drops\s+([\d.]+)%.*, cpu (.*)/DORA$",
    re.M,
)


def dhcp_pg_rows(out: str) -> list[Row]:
    """bench/dhcp_bench.py with PostgreSQL: one instance, two, and synchronous_commit on, each
    against pxelab on SQLite in the same run (CPU per DORA compared at the same step, since it
    falls as the rate rises); the two-instance duplicate checks in the notes."""
    steps = _PG_STEP.findall(out)
    cpu_at = {(name, asked): cpu for name, asked, _, _, cpu in steps}
    by = {r.get("server", ""): r for r in markdown_table(out)}
    if not by:  # stopped early: the best step at <= 1% drops from the per-step lines
        for name, asked, achieved, drops, _ in steps:
            by.setdefault(name, {})
            if float(drops) <= 1.0:
                by[name] = {
                    "highest rate asked at <= 1% drops": f"{asked}/s",
                    "DORA/s achieved": achieved,
                }
    sqlite, dnsmasq = by.get("pxelab", {}), by.get("dnsmasq", {})
    dns = dnsmasq.get("DORA/s achieved", "")
    dns_text = f"{dns} DORA/s" if dns else dnsmasq.get("highest rate asked at <= 1% drops", "?")
    base = number(sqlite.get("DORA/s achieved", ""))
    rows = []
    for name, label in (
        ("pxelab postgres", "1 instance"),
        ("pxelab postgres x2", "2 instances, one perfdhcp each at half the rate"),
        ("pxelab postgres x2 both", "2 instances, both answer every client (broadcast)"),
        ("pxelab postgres sync", "1 instance, synchronous_commit on"),
    ):
        row = by.get(name, {})
        ours = number(row.get("DORA/s achieved", ""))
        asked = row.get("highest rate asked at <= 1% drops", "none at <= 1%")
        note = f"asked {asked} (SQLite {sqlite.get('highest rate asked at <= 1% drops', '?')})"
        step = asked.removesuffix("/s")
        if (name, step) in cpu_at:
            note += (
                f"; server CPU per DORA at {asked}: {cpu_at[name, step]}, SQLite "
                f"{cpu_at.get(('pxelab', step), '?')}"
            )
        note += f"; dnsmasq with its lease file in the same run: {dns_text}"
        check = re.search(rf"^check \({name}\) (.*)$", out, re.M)
        if check:
            note += f"; duplicate check {check.group(1)}"
        rows.append(
            Row(
                f"DHCP perfdhcp on PostgreSQL, {label}: vs pxelab on SQLite",
                f"{ours:.0f} DORA/s" if ours is not None else "none at <= 1% drops",
                f"{base:.0f} DORA/s" if base is not None else "none at <= 1% drops",
                ratio(ours, base) if ours is not None and base else None,
                "",
                None,
                note,
            )
        )
    return rows if by else []


def ra_rows(out: str) -> list[Row]:
    """bench/dhcp_boot_ra.py's table: boot time with pxelab's RAs on and off."""
    by = {r.get("router advertisements", ""): r for r in markdown_table(out)}
    on, off = by.get("on", {}), by.get("off", {})
    t_on, t_off = (number(x.get("QEMU start -> initrd", "")) for x in (on, off))
    if t_on is None or t_off is None:
        return []
    return [
        Row(
            "Boot: pxelab with RAs on vs off (same VM, TCG)",
            f"{t_on:.1f} s",
            f"{t_off:.1f} s (RAs off)",
            ratio(t_on, t_off),
            "",
            None,
            f"iPXE ACK -> GET /boot.ipxe: {on.get('iPXE ACK -> GET /boot.ipxe', '?')} on, "
            f"{off.get('iPXE ACK -> GET /boot.ipxe', '?')} off",
        )
    ]


@dataclass
class Scenario:
    """One script, its time budget, and how its rows come back."""

    name: str
    script: str
    """Path under bench/."""
    budget: float
    """Seconds; the script gets SIGINT past it."""
    args: list[str] = field(default_factory=list)
    adapter: Callable[[str], list[Row]] | None = None
    """Turns the script's stdout into rows; None: it writes $PXELAB_BENCH_ROWS itself."""
    quick: list[str] | None = None
    """Arguments for `--quick` (every row once, short); None: left out of a quick run."""
    quick_budget: float = 60


SCENARIOS = [
    Scenario(
        "dhcp",
        "dhcp_bench.py",
        240,
        ["--period", "4", "--rates", "250,500,1000,1500,2000,2500,3000,4000,6000,8000"],
        dhcp_rows,
        ["--period", "2", "--rates", "1000,2000"],
        25,
    ),
    Scenario(
        "dhcp-pg",
        "dhcp_bench.py",
        300,
        [
            "--period",
            "5",
            "--rates",
            "100,250,500,1000,1500,2000,3000",
            "--servers",
            "pxelab,pxelab postgres,pxelab postgres x2,pxelab postgres x2 both,"
            "pxelab postgres sync,dnsmasq",
        ],
        dhcp_pg_rows,
    ),
    Scenario("tftp", "tftp_bench.py", 120, ["--repeats", "7"], None, ["--repeats", "1"], 20),
    Scenario("http", "http_bench.py", 200, [], None, ["--quick"], 45),
    Scenario(
        "storm",
        "storm.py",
        480,
        ["--sizes", "100,500,1000"],
        None,
        ["--sizes", "50", "--plot", str(WORK / "storm-quick.png")],
        35,
    ),
    Scenario("boot", "boot_bench.py", 150, ["--runs", "2"], None, ["--runs", "1"], 60),
    Scenario("boot-ra", "dhcp_boot_ra.py", 100, [], ra_rows),
]


@dataclass
class Outcome:
    """What running one scenario gave."""

    scenario: Scenario
    command: str
    rows: list[Row]
    seconds: float
    status: str
    """"ok", "exit N", "timed out after N s", "missing"."""
    output: str


def arguments(scenario: Scenario, quick: bool) -> list[str]:
    return (scenario.quick or []) if quick else scenario.args


def command_of(scenario: Scenario, quick: bool = False) -> str:
    return shlex.join([".venv/bin/python", f"bench/{scenario.script}", *arguments(scenario, quick)])


def run(scenario: Scenario, budget: float, work: Path, quick: bool = False) -> None:
    """Run one scenario script; its output, rows and status go to work/<name>.*."""
    script = ROOT / "bench" / scenario.script
    rows_file, out_file = work / f"{scenario.name}.rows", work / f"{scenario.name}.out"
    meta_file = work / f"{scenario.name}.json"
    for f in (rows_file, out_file, meta_file):
        f.unlink(missing_ok=True)
    if not script.is_file():
        meta_file.write_text(json.dumps({"status": "missing", "seconds": 0}))
        return
    argv = [sys.executable, str(script), *arguments(scenario, quick)]
    env = {**os.environ, ROWS_ENV: str(rows_file), "PYTHONUNBUFFERED": "1"}
    command = command_of(scenario, quick)
    print(f"== {scenario.name}: {command} (budget {budget:.0f} s)", flush=True)
    start = time.monotonic()
    kill_at = float("inf")
    with out_file.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        status = "ok"
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while True:
            chunk = proc.stdout.read()
            if chunk:
                out.write(chunk)
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            if proc.poll() is not None and not chunk:
                break
            if time.monotonic() - start > budget and status == "ok":
                status = f"timed out after {budget:.0f} s"
                os.killpg(proc.pid, signal.SIGINT)  # KeyboardInterrupt: its cleanup runs
                kill_at = time.monotonic() + 30
            if time.monotonic() > kill_at and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.1)
    if status == "ok" and proc.returncode:
        status = f"exit {proc.returncode}"
    meta_file.write_text(
        json.dumps({"status": status, "seconds": time.monotonic() - start, "command": command})
    )


def collect(scenario: Scenario, work: Path) -> Outcome | None:
    """What a run of the scenario left in work, as rows; None if it has not run."""
    meta_file = work / f"{scenario.name}.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    out_file, rows_file = work / f"{scenario.name}.out", work / f"{scenario.name}.rows"
    output = out_file.read_text(errors="replace") if out_file.exists() else ""
    rows: list[Row] = []
    if scenario.adapter is not None:
        rows = scenario.adapter(output)
    elif rows_file.exists():
        rows = [Row(**json.loads(line)) for line in rows_file.read_text().splitlines() if line]
    command = meta.get("command", command_of(scenario))
    return Outcome(scenario, command, rows, meta["seconds"], meta["status"], output)


def install_tools() -> None:
    missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if not missing:
        return
    print(f"bench: apt-get install {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def versions() -> str:
    """The Debian packages of the servers, clients and firmware, with their versions."""
    packages = [*sorted(set(TOOLS.values())), "qemu-system-x86", "ovmf", "ipxe"]
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}, ", *packages],
        capture_output=True, text=True,
    )  # fmt: skip
    return proc.stdout.rstrip(", ")


def machine() -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    try:
        osname = re.search(r'PRETTY_NAME="(.*)"', Path("/etc/os-release").read_text())
    except OSError:
        osname = None
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`nproc`)",
        f"- memory: {mem:.1f} GiB",
        f"- kernel: {platform.release()}; OS: {osname.group(1) if osname else '?'}",
        f"- Python {platform.python_version()}; Debian packages: {versions()}",
        "- accelerator: "
        + ("KVM" if "vmx" in _flags() or "svm" in _flags() else "TCG (no vmx/svm)"),
        f"- CPUs: {sharing()}",
    ]


def _flags() -> str:
    found = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1) if found else ""


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| scenario | pxelab | reference | pxelab/ref | target | met | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        ratio_text = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(
            f"| {r.scenario} | {r.pxelab} | {r.reference} | {ratio_text} | {r.target} | {met} "
            f"| {r.note} |"
        )
    return lines


def write_report(path: Path, outcomes: list[Outcome], started: str, took: float, load: str) -> None:
    rows = [r for o in outcomes for r in o.rows]
    lines = [
        "# Benchmarks: pxelab against dnsmasq, nginx and atftpd",
        "",
        f"Written by `make bench` (`bench/run.py`) on {started}, in {took / 60:.1f} minutes. "
        "Ratios are pxelab / reference (for rates and MB/s higher is better, for times lower "
        "is better). Everything ran on loopback or in network namespaces made by the scripts, "
        "with every server and client on the same machine, so clients and servers share the "
        "cores.",
        "",
        "## Machine",
        "",
        *machine(),
        f"- load average (1, 5, 15 min) before / after the run: {load or '?'} (before the run, "
        "anything above 0 is other work sharing the cores)",
        "",
        "## Results",
        "",
        *table(rows),
        "",
        *storm_section(outcomes, path),
        "## Scenarios and the exact commands",
        "",
        "`make bench` runs `scripts/setup.sh`, then `.venv/bin/python bench/run.py`, which "
        "installs what is missing (apt-get: "
        + ", ".join(sorted(set(TOOLS.values())))
        + ") and runs each script below with `PXELAB_BENCH_ROWS` set to a file for its rows. "
        "`bench/run.py --only NAME` runs one; `--report-only` rebuilds this file from `build/bench/`.",
        "",
        "| scenario | command (from the checkout, as root) | status | seconds |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(f"| {o.scenario.name} | `{o.command}` | {o.status} | {o.seconds:.0f} |")
    notes = ROOT / "bench" / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    lines += ["", "## Raw output of each scenario", ""]
    for o in outcomes:
        if o.output:
            lines += [f"### {o.scenario.name}", "", "```", o.output.rstrip(), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def storm_section(outcomes: list[Outcome], report: Path) -> list[str]:
    """The storm plot under the table, when the storm ran and its plot is beside the report."""
    plot = report.parent / "storm.png"
    if not any(o.scenario.name == "storm" and o.rows for o in outcomes) or not plot.is_file():
        return []
    return [
        "## Boot storm",
        "",
        "N machines boot at the same moment (`bench/storm.py`): time until the last one is done, "
        "and the median machine, against N, for pxelab and for dnsmasq (DHCP, TFTP) + nginx "
        "(HTTP, scripts pre-rendered to files). Figures per N are in the table above; where a "
        "stack had failures, its time counts only the machines that got through.",
        "",
        f"![boot storm: time to done against N]({plot.name})",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="scenario names (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-install", action="store_true", help="skip apt-get")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every row once with short runs, under 3 minutes (a check before a full run); "
        "writes build/bench/BENCHMARKS-quick.md unless --output is given",
    )
    parser.add_argument(
        "--report-only", action="store_true", help=f"no runs: rebuild the report from {WORK}"
    )
    args = parser.parse_args()
    selected = [s for s in SCENARIOS if not args.only or s.name in args.only]
    total_budget = TOTAL_BUDGET
    if args.quick:
        selected = [s for s in selected if s.quick is not None]
        total_budget = QUICK_BUDGET
        if args.output == ROOT / "docs" / "BENCHMARKS.md":
            args.output = WORK / "BENCHMARKS-quick.md"
    WORK.mkdir(parents=True, exist_ok=True)
    run_file = WORK / "run.json"
    if not args.report_only:
        if os.geteuid() != 0:
            print("bench: needs root (namespaces, apt-get)", file=sys.stderr)
            return 1
        if not args.no_install:
            install_tools()
        started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()
        start = time.monotonic()
        for scenario in selected:
            left = total_budget - (time.monotonic() - start)
            if left < (10 if args.quick else 30):
                print(f"== {scenario.name}: skipped, the run's time budget is spent", flush=True)
                continue
            budget = scenario.quick_budget if args.quick else scenario.budget
            run(scenario, min(budget, left), WORK, args.quick)
        took = time.monotonic() - start
        run_file.write_text(
            json.dumps({"started": started_at, "seconds": took, "load": [load, os.getloadavg()]})
        )
    meta = json.loads(run_file.read_text()) if run_file.exists() else {}
    started_at, took = meta.get("started", "?"), meta.get("seconds", 0.0)
    load_text = " / ".join(", ".join(f"{x:.1f}" for x in sample) for sample in meta.get("load", []))
    outcomes = [o for o in (collect(s, WORK) for s in selected) if o is not None]
    rows = [r for o in outcomes for r in o.rows]
    print("\n" + "\n".join(table(rows)))
    for o in outcomes:
        if o.status != "ok" or not o.rows:
            print(f"bench: {o.scenario.name}: {o.status}, {len(o.rows)} rows")
    write_report(args.output, outcomes, started_at, took, load_text)
    print(f"bench: wrote {args.output} ({took / 60:.1f} min)")
    return 0 if all(o.status in ("ok", "missing") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
