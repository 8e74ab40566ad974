"""The exceptions pxelab raises on purpose; each says what was wrong and where."""

from __future__ import annotations


class PxelabError(Exception):
    """Root of every error pxelab raises on purpose."""


class ConfigError(PxelabError):
    """A setting is missing or invalid; the message names the key and, if any, the file."""


class HostFileError(PxelabError):
    """A host definition file cannot be used; the message names the file and the reason."""


class MalformedPacket(PxelabError):
    """A datagram could not be parsed; the message says what was wrong with it."""
