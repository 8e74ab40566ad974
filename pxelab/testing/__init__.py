"""Machinery to boot VMs from pxelab: namespaces, a tiny initrd, QEMU; used by tests and the demo."""
