"""Install states: install -> installed -> install, per MAC, atomic files that survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pxelab.hosts.install import (
    InstallState,
    InstallStore,
    StateError,
    install_store,
    parse_state,
)

MAC = "52:54:00:00:00:01"


def test_unrecorded_host_is_to_be_installed(tmp_path: Path) -> None:
    store = install_store(tmp_path)
    state = store.get(MAC)
    assert state.state is InstallState.INSTALL and state.changed is None
    assert not (tmp_path / "install").exists()  # reading writes nothing


def test_installed_then_reinstall_survive_a_new_store(tmp_path: Path) -> None:
    store = install_store(tmp_path)
    store.set(MAC.upper().replace(":", "-"), InstallState.INSTALLED, 1000.5, "10.0.0.7")
    again = install_store(tmp_path)  # a restarted daemon, or the CLI in another process
    got = again.get(MAC)
    assert (got.state, got.changed, got.by) == (InstallState.INSTALLED, 1000.5, "10.0.0.7")
    assert again.get("52:54:00:00:00:02").state is InstallState.INSTALL  # per MAC
    path = tmp_path / "install" / "52-54-00-00-00-01.json"
    assert json.loads(path.read_text()) == {
        "state": "installed",
        "changed": 1000.5,
        "by": "10.0.0.7",
        "generation": 0,
    }
    again.set(MAC, InstallState.INSTALL, 2000.0, "cli")
    assert store.get(MAC).state is InstallState.INSTALL
    assert [p.name for p in (tmp_path / "install").iterdir()] == [path.name]  # no temp files left


def test_forget_and_memory_store(tmp_path: Path) -> None:
    store = install_store(tmp_path)
    store.set(MAC, InstallState.INSTALLED, 1.0, "x")
    store.forget(MAC)
    assert store.get(MAC).state is InstallState.INSTALL
    memory = InstallStore(None)
    memory.set(MAC, InstallState.INSTALLED, 1.0, "x")
    assert memory.get(MAC).state is InstallState.INSTALLED
    memory.forget(MAC)
    assert memory.get(MAC).state is InstallState.INSTALL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "invalid JSON"),
        ('["installed"]', "expected a JSON object"),
        ('{"state": "done"}', "key 'state'"),
        ('{"state": "installed", "changed": "x"}', "key 'changed'"),
        ('{"state": "installed", "by": 5}', "key 'by'"),
    ],
)
def test_broken_state_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    store = install_store(tmp_path)
    store.path(MAC).parent.mkdir(parents=True)
    store.path(MAC).write_text(text)
    with pytest.raises(StateError, match=r"52-54-00-00-00-01\.json") as info:
        store.get(MAC)
    assert message in str(info.value)


def test_unwritable_state_dir_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "install").write_text("a file where the directory should be")
    with pytest.raises(StateError, match="cannot write"):
        install_store(tmp_path).set(MAC, InstallState.INSTALLED, 1.0, "x")


def test_parse_state_accepts_what_set_writes() -> None:
    record = parse_state({"state": "installed", "changed": 3, "by": "cli"}, "f.json")
    assert parse_state(record.to_json(), "f.json") == record
