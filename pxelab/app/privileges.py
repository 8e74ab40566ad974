"""Dropping root once the privileged ports are bound (`--user NAME`)."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from pxelab.errors import ConfigError


@dataclass(frozen=True)
class Account:
    """The unprivileged account pxelab runs as."""

    name: str
    """Its user name."""
    uid: int
    """Its user id."""
    gid: int
    """Its primary group id."""


def lookup(name: str) -> Account:
    """The account called name; ConfigError naming the key if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"key 'user': no user {name!r} on this machine") from None
    return Account(name, entry.pw_uid, entry.pw_gid)


def give_state_dir(account: Account, state_dir: Path) -> None:
    """Make the state dir (and what is in it) the account's, so it can keep writing there."""
    for path in [state_dir, *state_dir.rglob("*")]:
        os.chown(path, account.uid, account.gid, follow_symlinks=False)


def drop_to(account: Account) -> None:
    """Become account for good: no supplementary groups, then gid, then uid (in that order)."""
    if os.geteuid() != 0:
        if os.geteuid() == account.uid:
            return
        raise ConfigError(f"key 'user': switching to {account.name!r} needs root")
    os.setgroups([])
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise ConfigError(f"key 'user': still root after switching to {account.name!r}")
