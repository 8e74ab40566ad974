"""A tiny test initrd: static busybox, the NIC driver modules, and an init that prints a marker.

The marker line is `PXELAB-BOOT-OK mac=<mac> cmdline=<kernel command line>` on the console;
then the VM powers off. When the command line has `pxelab.install=1` and pxelab's
`pxelab.installed_url=<url>`, the init first plays an installer that finished: it gets an address
with udhcpc, POSTs to that URL with busybox wget, and prints `PXELAB-INSTALLED ok` (or `failed`).
`cpio_newc` and `module_order` are pure.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MARKER = "PXELAB-BOOT-OK"
"""First word of the line the test initrd prints once it has booted."""
INSTALLED_MARKER = "PXELAB-INSTALLED"
"""First word of the line the init prints after its install callback: then `ok` or `failed`."""

UDHCPC_SCRIPT = """#!/bin/busybox sh
# udhcpc calls this with bound/renew and the lease in the environment ($mask is a prefix length)
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""

NIC_MODULES = ("virtio_pci", "virtio_net")
"""Modules the init loads so the NIC (and its MAC) shows up; dependencies are added."""

INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done
mac=
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  for dev in /sys/class/net/*; do
    [ "${{dev##*/}}" = lo ] && continue
    [ -r "$dev/address" ] && mac=$(cat "$dev/address") && break
  done
  [ -n "$mac" ] && break
  sleep 0.25
done
install= url=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    pxelab.install=1) install=1 ;;
    pxelab.installed_url=*) url="${{arg#pxelab.installed_url=}}" ;;
  esac
done
if [ -n "$install" ] && [ -n "$url" ]; then
  ip link set "${{dev##*/}}" up
  if udhcpc -i "${{dev##*/}}" -s /bin/udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1 &&
     wget -q -O /tmp/installed --post-data= "$url"; then
    echo "{INSTALLED_MARKER} ok $(cat /tmp/installed)"
  else
    echo "{INSTALLED_MARKER} failed: no address or POST $url refused"
  fi
fi
echo "{MARKER} mac=$mac cmdline=$(cat /proc/cmdline)"
sync
poweroff -f
"""


@dataclass(frozen=True)
class Kernel:
    """A kernel image and its modules directory, found on this machine."""

    vmlinuz: Path
    """The kernel image (bzImage / EFI stub)."""
    modules: Path
    """`/lib/modules/<version>` for that kernel."""


def find_kernel(boot: Path = Path("/boot"), lib: Path = Path("/lib/modules")) -> Kernel:
    """The newest installed kernel that has a virtio_net module (prefers Debian's cloud kernel)."""
    found: list[Kernel] = []
    for vmlinuz in sorted(boot.glob("vmlinuz-*")):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        modules = lib / version
        if (modules / "modules.dep").is_file():
            found.append(Kernel(vmlinuz, modules))
    if not found:
        raise FileNotFoundError(
            f"no kernel with modules in {boot} and {lib}: install linux-image-cloud-amd64"
        )
    found.sort(key=lambda k: ("cloud" in k.vmlinuz.name, k.vmlinuz.name))
    return found[-1]


def module_order(modules_dep: str, wanted: Iterable[str]) -> list[str]:
    """Paths (as in modules.dep) of the wanted modules and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


def cpio_newc(files: Mapping[str, tuple[int, bytes]]) -> bytes:
    """A cpio 'newc' archive of {path: (mode, data)}; directories have mode 0o040755 and no data."""
    out = bytearray()
    for ino, (name, (mode, data)) in enumerate([*files.items(), ("TRAILER!!!", (0, b""))], 1):
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        )
        out += header.encode() + encoded
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initrd(kernel: Kernel, busybox: Path = Path("/bin/busybox")) -> bytes:
    """The gzipped test initrd for this kernel, with busybox and the NIC modules."""
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} is missing: install busybox-static")
    modules = module_order((kernel.modules / "modules.dep").read_text(), NIC_MODULES)
    files: dict[str, tuple[int, bytes]] = {
        d: (0o040755, b"") for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")
    }
    files["bin/busybox"] = (0o100755, busybox.read_bytes())
    files["init"] = (0o100755, INIT.encode())
    files["bin/udhcpc.script"] = (0o100755, UDHCPC_SCRIPT.encode())
    names = []
    for rel in modules:
        name = Path(rel).name
        if name.endswith((".xz", ".zst", ".gz")):
            raise ValueError(f"{rel}: compressed modules are not supported by busybox insmod here")
        names.append(name)
        files[f"lib/modules/{name}"] = (0o100644, (kernel.modules / rel).read_bytes())
    files["lib/modules/load-order"] = (0o100644, ("\n".join(names) + "\n").encode())
    return gzip.compress(cpio_newc(files), compresslevel=6)
