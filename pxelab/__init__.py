"""pxelab: one asyncio daemon that network-boots lab machines and VMs."""

__version__ = "0.1.0"
