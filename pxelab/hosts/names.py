"""Host names for installers: the RFC 1123 name a host's `name` (pxelab's identifier) gives the
installed system. Pure."""

from __future__ import annotations

import re

_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]")
"""What RFC 1123 leaves out of a host name label (after lower-casing)."""
MAX_LABEL = 63
"""Characters in one dot-separated label at most (RFC 1123)."""
MAX_HOSTNAME = 63
"""Characters in an installer's host name at most (Debian's netcfg: 63; Anaconda: 64)."""


def hostname_for(name: str) -> str:
    """The host name installers get for a host's `name`, valid by RFC 1123 and by what
    subiquity, Anaconda and Debian's netcfg check: lower case; `_` (and anything else outside
    letters, digits and `-`) becomes `-`; each dot-separated label is cut to MAX_LABEL
    characters and loses its leading and trailing `-`; empty labels go; at most MAX_HOSTNAME
    characters in all. A name that already is such a host name comes back unchanged."""
    labels = (
        _NOT_IN_LABEL.sub("-", label)[:MAX_LABEL].strip("-") for label in name.lower().split(".")
    )
    return ".".join(label for label in labels if label)[:MAX_HOSTNAME].rstrip("-.")
