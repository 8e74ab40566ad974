"""Syslog datagrams -> `SyslogMessage`: RFC 5424, RFC 3164 and what busybox and d-i send. Pure.

Every parse failure is one `MalformedSyslog` that says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pxelab.errors import PxelabError

MAX_PRI = 191
"""Facility 23 (local7) and severity 7 (debug)."""
NILVALUE = "-"
_PRI = re.compile(rb"<(\d{1,3})>")
_BSD_TIME = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")
"""RFC 3164's TIMESTAMP: `Mmm dd hh:mm:ss` (day padded with a space), then a space."""
_TAG = re.compile(r"([^\s:\[\]]{1,48})(?:\[([^\]\s]{1,16})\])?:(?: |$)")
"""`program[pid]: ` or `program: ` at the start of an RFC 3164 message."""
_BOM = "\ufeff"


class MalformedSyslog(PxelabError):
    """A datagram that is not a syslog message; the text says why."""


@dataclass(frozen=True)
class SyslogMessage:
    """One log line as a client sent it."""

    facility: int
    """0 kern, 1 user, 3 daemon, 16-23 local0-7, …"""
    severity: int
    """0 emerg … 3 err, 4 warning, 5 notice, 6 info, 7 debug."""
    hostname: str
    """The sender's idea of its name, or "" when it sent none."""
    app: str
    """The program (RFC 3164 tag, RFC 5424 APP-NAME), or ""."""
    text: str
    """The message, printable (control characters replaced)."""


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "\ufffd" for c in text.replace("\t", " ")).strip()


def parse(data: bytes) -> SyslogMessage:
    """Parse one datagram; MalformedSyslog when it is empty, binary or has a bad PRI."""
    if not data.strip():
        raise MalformedSyslog("empty datagram")
    if b"\x00" in data:
        raise MalformedSyslog("binary data (NUL bytes)")
    pri = 13  # RFC 3164 §4.3.3: no PRI means user.notice
    found = _PRI.match(data)
    if found is not None:
        pri = int(found.group(1))
        if pri > MAX_PRI:
            raise MalformedSyslog(f"PRI {pri} is above {MAX_PRI}")
        data = data[found.end() :]
    elif data.startswith(b"<"):
        raise MalformedSyslog(f"bad PRI {data[:6]!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSyslog(f"not UTF-8 at byte {exc.start}") from None
    text = text.rstrip("\r\n")
    if text.startswith("1 "):
        return _rfc5424(pri, text[2:])
    return _rfc3164(pri, text)


def _rfc5424(pri: int, rest: str) -> SyslogMessage:
    """`TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]` (RFC 5424 §6)."""
    fields = rest.split(" ", 5)
    if len(fields) < 6:
        if len(fields) == 5:  # no STRUCTURED-DATA and no MSG: tolerated
            fields.append(NILVALUE)
        else:
            raise MalformedSyslog(f"RFC 5424 header has {len(fields)} of 6 fields")
    _time, hostname, app, _procid, _msgid, tail = fields
    message = _skip_structured_data(tail)
    if message.startswith(_BOM):
        message = message[1:]
    return SyslogMessage(
        pri // 8,
        pri % 8,
        "" if hostname == NILVALUE else _printable(hostname)[:255],
        "" if app == NILVALUE else _printable(app)[:48],
        _printable(message),
    )


def _skip_structured_data(tail: str) -> str:
    """What follows STRUCTURED-DATA (`-` or one or more `[id k="v"]`, `\\]` escaped)."""
    if tail == NILVALUE or tail.startswith(NILVALUE + " "):
        return tail[2:]
    if not tail.startswith("["):
        raise MalformedSyslog("RFC 5424 STRUCTURED-DATA is neither '-' nor '[…]'")
    index, depth = 0, 0
    while index < len(tail):
        char = tail[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0 and (index + 1 == len(tail) or tail[index + 1] != "["):
                return tail[index + 2 :]
        index += 1
    raise MalformedSyslog("RFC 5424 STRUCTURED-DATA is not closed")


def _rfc3164(pri: int, rest: str) -> SyslogMessage:
    """`[TIMESTAMP [HOSTNAME ]]TAG: MSG`, or any text (RFC 3164 §4.3: relays keep it all)."""
    hostname = ""
    if _BSD_TIME.match(rest):
        rest = rest[16:]
        if not _TAG.match(rest):  # busybox and d-i send no HOSTNAME; logger --rfc3164 does
            word, _, after = rest.partition(" ")
            if word and after and _TAG.match(after):
                hostname, rest = word, after
    app = ""
    tag = _TAG.match(rest)
    if tag is not None:
        app, rest = tag.group(1), rest[tag.end() :]
    return SyslogMessage(
        pri // 8, pri % 8, _printable(hostname)[:255], _printable(app), _printable(rest)
    )
