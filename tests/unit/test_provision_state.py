"""Install states: install -> installed -> install per MAC, with the install-generation rule;
the JSON files of pxelab before the state store are read with `parse_state`."""

from __future__ import annotations

import pytest

from pxelab.hosts.install import InstallState, InstallStore, MemoryStates, StateError, parse_state

MAC = "52:54:00:00:00:01"


def test_unrecorded_host_is_to_be_installed() -> None:
    state = InstallStore().get(MAC)
    assert state.state is InstallState.INSTALL and state.changed is None
    assert state.generation == 0


async def test_states_per_mac_and_reinstall_starts_a_new_generation() -> None:
    states = MemoryStates()
    store = InstallStore(states)
    done = await store.set(MAC.upper().replace(":", "-"), InstallState.INSTALLED, 1000.5, "ip")
    assert (done.state, done.changed, done.by, done.generation) == (
        InstallState.INSTALLED,
        1000.5,
        "ip",
        0,
    )
    assert InstallStore(states).get(MAC) == done  # another view of the same states
    assert store.get("52:54:00:00:00:02").state is InstallState.INSTALL  # per MAC
    again = await store.set(MAC, InstallState.INSTALL, 2000.0, "cli")
    assert (again.state, again.generation) == (InstallState.INSTALL, 1)
    installed = await store.set(MAC, InstallState.INSTALLED, 2100.0, "ip")
    assert installed.generation == 1  # marking installed keeps the generation
    assert (await store.set(MAC, InstallState.INSTALL, 2200.0, "cli")).generation == 2


async def test_forget() -> None:
    store = InstallStore()
    await store.set(MAC, InstallState.INSTALLED, 1.0, "x")
    await store.forget(MAC)
    assert store.get(MAC).state is InstallState.INSTALL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["installed"], "expected a JSON object"),
        ({"state": "done"}, "key 'state'"),
        ({"state": "installed", "changed": "x"}, "key 'changed'"),
        ({"state": "installed", "by": 5}, "key 'by'"),
        ({"state": "installed", "generation": -1}, "key 'generation'"),
    ],
)
def test_a_broken_state_file_names_the_file(data: object, message: str) -> None:
    with pytest.raises(StateError, match=r"52-54-00-00-00-01\.json") as info:
        parse_state(data, "install/52-54-00-00-00-01.json")
    assert message in str(info.value)


def test_parse_state_accepts_what_to_json_writes() -> None:
    record = parse_state({"state": "installed", "changed": 3, "by": "cli"}, "f.json")
    assert parse_state(record.to_json(), "f.json") == record
