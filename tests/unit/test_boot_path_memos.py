"""The boot path's memos give what the uncached functions give, and forget what they must."""

from __future__ import annotations

import pytest

from pxelab.hosts.inventory import normalize_mac
from pxelab.http import auth
from pxelab.http.guard import Guard


def test_normalize_mac_memo_keeps_its_answers_and_its_refusals() -> None:
    for _ in range(2):
        assert normalize_mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"
        assert normalize_mac(" 5254.00ab.cdef ") == "52:54:00:ab:cd:ef"
        with pytest.raises(ValueError, match="not a MAC address"):
            normalize_mac("52:54:00:ab:cd")


def test_a_memoised_credential_follows_the_generation_and_the_secret() -> None:
    guard = Guard()
    mac = "52:54:00:ab:cd:ef"
    assert guard.credential(mac, 1) is None  # no secret loaded yet
    guard.secret = b"s" * 32
    first = guard.credential(mac, 1)
    assert first == auth.callback_credential(guard.secret, mac, 1)
    assert guard.credential(mac, 1) == first
    assert guard.credential(mac, 2) == auth.callback_credential(guard.secret, mac, 2)
    guard.secret = b"t" * 32  # another secret (a new store): no stale signature
    assert guard.credential(mac, 1) == auth.callback_credential(guard.secret, mac, 1) != first
    assert guard.verify(mac, 1, guard.credential(mac, 1) or "") is None
