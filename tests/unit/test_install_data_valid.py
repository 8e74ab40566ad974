"""Install data for a table of hosts passes Anaconda's parser and Ubuntu's autoinstall schema.

In process only; tests/integration/test_install_validators.py runs the installers' own commands.
"""

from __future__ import annotations

import pytest
import yaml

from tests.installer_checks import (
    AUTOINSTALL,
    KEY_ECDSA,
    KEY_ED,
    KEY_RSA,
    Rendered,
    check_in_process,
    check_kickstart,
    rendered,
    schema_errors,
)

CASES = list(rendered())


@pytest.mark.parametrize("data", CASES, ids=[c.id for c in CASES])
def test_install_data_passes_the_installers_parsers(data: Rendered) -> None:
    check_in_process(data.name, data.template, data.text)


def test_the_table_covers_every_template_and_kind_of_host() -> None:
    assert {c.template for c in CASES} == {"generic", "ubuntu", "fedora", "debian"}
    assert {c.name for c in CASES} == {
        "meta-data", "user-data", "network-config", "kickstart", "preseed"
    }  # fmt: skip
    preseed = next(c.text for c in CASES if c.case == "mirror" and c.name == "preseed")
    assert "d-i mirror/http/hostname string mirror.pxelab.test\n" in preseed
    kickstarts = {c.case: c.text for c in CASES if c.name == "kickstart"}
    assert all(f"\n{key}\n" in kickstarts["keys"] for key in (KEY_ED, KEY_RSA, KEY_ECDSA))
    assert "authorized_keys" not in kickstarts["no-keys"]
    plain = yaml.safe_load(next(c.text for c in CASES if c.id == "no-keys-generic-user-data"))
    assert "ssh_authorized_keys" not in plain["users"][0]  # cloud-init wants at least one


def test_kickstart_check_fails_on_errors_and_on_deprecation_warnings() -> None:
    with pytest.raises(AssertionError, match="already been defined"):
        check_kickstart(
            f'user --name=u\nsshkey --username=u "{KEY_ED}"\nsshkey --username=u "{KEY_ED}"\n'
        )
    with pytest.raises(AssertionError, match="deprecated"):
        check_kickstart("timezone UTC --utc --ntpservers=a\n")


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({}, "/version: missing"),
        ({"version": 2}, "/version: 2 is out of range"),
        ({"version": True}, "/version: True is not integer"),
        ({"version": 1, "identity": {"hostname": "h"}}, "/identity/username: missing"),
        ({"version": 1, "ssh": {"authorized-keys": "k"}}, "/ssh/authorized-keys: 'k' is not array"),
        ({"version": 1, "ssh": {"allow-pw": "no"}}, "/ssh/allow-pw: 'no' is not boolean"),
        ({"version": 1, "late-commands": [1]}, "/late-commands/0: 1 is not string or array"),
        ({"version": 1, "storage": []}, "/storage: [] is not object"),
        ({"version": 1, "hostname": "h"}, "/hostname: unknown key"),
    ],
)
def test_autoinstall_schema_names_what_breaks_it(document: dict[str, object], error: str) -> None:
    assert error in schema_errors(document, AUTOINSTALL)
