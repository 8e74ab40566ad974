"""Distro boot files: a catalog of upstream sources, verified downloads, ISO extraction, a cache.

`pxelab assets fetch|import|ipxe|list` (pxelab/cli/assets.py) drives it.
"""

from __future__ import annotations

from pxelab.errors import PxelabError


class AssetError(PxelabError):
    """A boot file could not be fetched, verified or extracted; the message names the file or URL."""
