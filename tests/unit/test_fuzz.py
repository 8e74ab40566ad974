"""Fuzzing on a CI budget, in-process: hypothesis feeds the `make fuzz` targets random and mutated
inputs; any exception fails the test (atheris runs them in tests/integration/test_fuzz_atheris.py).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.dhcp6_target import dhcp6_one
from fuzz.targets import dhcp_one, seed_inputs, tftp_one


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    return flips.map(lambda edits: bytes(_apply(bytearray(seed), edits)))


def _apply(data: bytearray, edits: list[tuple[int, int]]) -> bytearray:
    for index, value in edits:
        data[index] = value
    return data


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600), _mutations(seed_inputs()["dhcp"][0])))
def test_dhcp_target_never_raises(data: bytes) -> None:
    dhcp_one(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), _mutations(seed_inputs()["tftp"][0])))
def test_tftp_target_never_raises(data: bytes) -> None:
    tftp_one(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _mutations(seed_inputs()["dhcp6"][0])))
def test_dhcp6_target_never_raises(data: bytes) -> None:
    dhcp6_one(data)
