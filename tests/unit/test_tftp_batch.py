"""Cutting a TFTP window into GSO runs, and the switch that turns GSO off for good."""

from __future__ import annotations

import errno

import pytest

from pxelab.tftp.batch import MAX_BYTES, MAX_SEGMENTS, SOL_UDP, UDP_SEGMENT, Gso, run_end


def runs(sizes: list[int]) -> list[list[int]]:
    """The runs run_end makes of datagrams of these sizes, as lists of sizes."""
    datagrams = [bytes(size) for size in sizes]
    out, start = [], 0
    while start < len(datagrams):
        end = run_end(datagrams, start)
        assert end > start
        out.append(sizes[start:end])
        start = end
    return out


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([1472] * 16, [[1472] * 16]),
        ([1472] * 3 + [100], [[1472] * 3 + [100]]),  # the short last block rides along
        ([100], [[100]]),
        ([20, 1472, 1472], [[20], [1472, 1472]]),  # an OACK before DATA: a run of its own
        ([1472, 100, 1472], [[1472, 100], [1472]]),  # nothing after a shorter one
        ([516] * 130, [[516] * 64, [516] * 64, [516] * 2]),  # MAX_SEGMENTS per send
        ([8196] * 9, [[8196] * 7, [8196] * 2]),  # MAX_BYTES per send
    ],
)
def test_run_end(sizes: list[int], expected: list[list[int]]) -> None:
    assert runs(sizes) == expected
    for run in expected:
        assert len(run) <= MAX_SEGMENTS and sum(run) <= MAX_BYTES


def test_ancillary_is_made_once_per_size() -> None:
    gso = Gso()
    cmsg = gso.ancillary(1472)
    assert cmsg == [(SOL_UDP, UDP_SEGMENT, (1472).to_bytes(2, "little"))]
    assert gso.ancillary(1472) is cmsg


@pytest.mark.parametrize("code", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP])
def test_a_refusal_turns_gso_off(code: int) -> None:
    gso = Gso()
    gso.enabled = True
    assert gso.refused(OSError(code, "no"))
    assert not gso.enabled


def test_other_errors_leave_gso_on() -> None:
    gso = Gso()
    gso.enabled = True
    assert not gso.refused(OSError(errno.ENOBUFS, "later"))
    assert not gso.refused(OSError(errno.EHOSTUNREACH, "lost"))
    assert gso.enabled
