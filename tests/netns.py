"""The tests' network-namespace labs live in the package (the demo and fixtures use them too)."""

from pxelab.testing.netns import Lab, NetNs, lab, require_root, sh

__all__ = ["Lab", "NetNs", "lab", "require_root", "sh"]
