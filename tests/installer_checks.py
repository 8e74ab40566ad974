"""Install data as the installers see it: a table of hosts to render, and the in-process checks.

The unit tests run the pure checks (pykickstart's parser, the autoinstall and network-config
schemas below); tests/integration/test_install_validators.py runs the installers' own commands.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pykickstart.errors import KickstartError, KickstartParseWarning
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

from pxelab.boot.render import INSTALL_DATA_FOR, Renderer
from pxelab.hosts.inventory import TEMPLATES, Host, parse_host

BASE = "http://10.0.0.1:8080"
DISTRO = {"generic": "demo", "ubuntu": "ubuntu-24.04", "fedora": "fedora-41", "debian": "debian-12"}
"""A distro of each install template (the template follows from the distro's name)."""
KEY_ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0 admin@lab"
KEY_RSA = "ssh-rsa AAAAB3NzaC1yc2E= ops"
KEY_ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= ci:runner/1"

HOSTS: dict[str, dict[str, Any]] = {
    "one-key": {"name": "node1", "ssh_key": KEY_ED},
    "keys": {"name": "rack-2.row_b", "ssh_keys": [KEY_ED, KEY_RSA, KEY_ECDSA]},
    "no-keys": {"name": "bare_metal-01.lab", "arch": "aarch64"},
    "mirror": {
        "name": "db-01.lab",
        "ssh_key": KEY_RSA,
        "mirror": "mirror.pxelab.test",
        "role": "db",
        "kernel_args": "quiet",
    },
    "messy-name": {"name": "Rack_7.Node-A1_", "ssh_key": KEY_ED},
}
"""Host files that differ where the templates branch: keys, names (upper case and `_`, which
installers refuse in a host name), extra keys, arch."""


@dataclass(frozen=True)
class Rendered:
    """One piece of one host's install data."""

    case: str
    """The HOSTS row."""
    template: str
    """The host's install template."""
    name: str
    """The install data name (a key of INSTALL_DATA)."""
    text: str
    """What pxelab serves."""

    @property
    def id(self) -> str:
        return f"{self.case}-{self.template}-{self.name}"


def host(case: str, template: str) -> Host:
    """The HOSTS row `case` as a host of `template`."""
    fields = {"mac": "52:54:00:ab:cd:01", "distro": DISTRO[template], **HOSTS[case]}
    return parse_host(fields, f"{fields['name']}.json")


def rendered() -> Iterator[Rendered]:
    """Every install data each template's installer fetches, for every row of HOSTS."""
    renderer = Renderer()
    for case in HOSTS:
        for template in TEMPLATES:
            for name in INSTALL_DATA_FOR[template]:
                text = renderer.install_data(host(case, template), BASE, name)
                yield Rendered(case, template, name, text)


def check_kickstart(text: str) -> None:
    """Anaconda's parser (pykickstart, latest syntax) on text; warnings are errors."""
    parser = KickstartParser(makeVersion(), errorsAreFatal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KickstartParseWarning)
        warnings.simplefilter("error", DeprecationWarning)
        try:
            parser.readKickstartFromString(text)
        except (KickstartError, KickstartParseWarning, DeprecationWarning) as exc:
            raise AssertionError(f"kickstart rejected: {exc}\n{text}") from exc
    if parser.errorsCount:
        raise AssertionError(f"kickstart has {parser.errorsCount} errors\n{text}")


_STRINGS = {"type": "array", "items": {"type": "string"}}
_COMMANDS = {"type": "array", "items": {"type": ["string", "array"], "items": {"type": "string"}}}
AUTOINSTALL_KEYS = [
    "version", "interactive-sections", "early-commands", "locale", "refresh-installer",
    "keyboard", "source", "network", "proxy", "apt", "storage", "identity", "active-directory",
    "ubuntu-pro", "ssh", "codecs", "drivers", "oem", "snaps", "debconf-selections", "packages",
    "kernel", "kernel-crash-dumps", "timezone", "updates", "shutdown", "late-commands",
    "error-commands", "reporting", "user-data",
]  # fmt: skip
"""The keys Ubuntu's autoinstall reference lists; any other key fails validation (24.04 on)."""
AUTOINSTALL: dict[str, Any] = {
    "type": "object",
    "required": ["version"],
    "allowed": AUTOINSTALL_KEYS,
    "properties": {
        "version": {"type": "integer", "minimum": 1, "maximum": 1},
        "identity": {
            "type": "object",
            "required": ["username", "hostname", "password"],
            "allowed": ["realname", "username", "hostname", "password"],
            "properties": {
                k: {"type": "string"} for k in ("realname", "username", "hostname", "password")
            },
        },
        "ssh": {
            "type": "object",
            "allowed": ["install-server", "authorized-keys", "allow-pw"],
            "properties": {
                "install-server": {"type": "boolean"},
                "authorized-keys": _STRINGS,
                "allow-pw": {"type": "boolean"},
            },
        },
        "storage": {"type": "object"},
        "late-commands": _COMMANDS,
        "early-commands": _COMMANDS,
        "error-commands": _COMMANDS,
    },
}
"""The part of Ubuntu's autoinstall schema (reference manual, subiquity's autoinstall-schema.json)
that pxelab's document uses: version, identity, ssh, storage and the command lists."""
NETWORK_V2: dict[str, Any] = {
    "type": "object",
    "required": ["version"],
    "properties": {
        "version": {"type": "integer", "minimum": 2, "maximum": 2},
        "ethernets": {
            "type": "object",
            "values": {
                "type": "object",
                "properties": {
                    "match": {
                        "type": "object",
                        "allowed": ["name", "macaddress", "driver"],
                        "properties": {k: {"type": "string"} for k in ("name", "macaddress")},
                    },
                    "dhcp4": {"type": "boolean"},
                },
            },
        },
    },
}
"""Netplan-style network config version 2, as cloud-init and subiquity read it (the keys we use)."""
META_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["instance-id", "local-hostname"],
    "properties": {"instance-id": {"type": "string"}, "local-hostname": {"type": "string"}},
}
"""NoCloud meta-data: the instance id and host name, both strings."""

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
}


def schema_errors(value: Any, schema: Mapping[str, Any], where: str = "") -> list[str]:
    """What in value breaks schema (a small JSON-schema subset); empty when it fits."""
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(
        isinstance(value, _TYPES[k]) and not (k == "integer" and isinstance(value, bool))
        for k in kinds
    ):
        return [f"{where or '/'}: {value!r} is not {' or '.join(kinds)}"]
    errors: list[str] = []
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        errors.append(f"{where}: {value} is out of range")
    if isinstance(value, dict):
        errors += [f"{where}/{k}: missing" for k in schema.get("required", ()) if k not in value]
        allowed = schema.get("allowed")
        errors += [f"{where}/{k}: unknown key" for k in value if allowed and k not in allowed]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("values"))
            if sub is not None:
                errors += schema_errors(item, sub, f"{where}/{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}/{i}")
    return errors


def check_yaml(name: str, template: str, text: str) -> None:
    """The cloud-init files against their schemas: autoinstall, network-config, meta-data."""
    data = yaml.safe_load(text)
    if name == "user-data":
        if not text.startswith("#cloud-config\n"):
            raise AssertionError(f"user-data does not start with #cloud-config:\n{text}")
        if template == "ubuntu":
            if set(data) != {"autoinstall"}:
                raise AssertionError(f"autoinstall user-data has other top keys: {sorted(data)}")
            errors = schema_errors(data["autoinstall"], AUTOINSTALL, "/autoinstall")
        else:
            errors = [] if isinstance(data, dict) else [f"not a mapping: {data!r}"]
    else:
        errors = schema_errors(data, NETWORK_V2 if name == "network-config" else META_DATA)
    if errors:
        raise AssertionError(f"{name} ({template}): " + "; ".join(errors) + f"\n{text}")


def check_in_process(name: str, template: str, text: str) -> None:
    """Every check that needs no other program: pykickstart, the YAML schemas, and the installers'
    host name rules on every host name the data sets."""
    if name == "kickstart":
        check_kickstart(text)
    elif name != "preseed":
        check_yaml(name, template, text)
    for hostname in hostnames(name, text):
        errors = hostname_errors(hostname)
        if errors:
            raise AssertionError(f"{name} ({template}): host name {hostname!r}: {errors}\n{text}")


def hostnames(name: str, text: str) -> list[str]:
    """Every host name an install data document sets (kickstart `network --hostname`, preseed
    `netcfg/get_hostname`, autoinstall `identity.hostname`, cloud-config `hostname`, meta-data
    `local-hostname`)."""
    if name == "kickstart":
        return re.findall(r"^network .*--hostname=(\S+)", text, re.MULTILINE)
    if name == "preseed":
        return re.findall(r"^d-i netcfg/get_hostname string (\S+)$", text, re.MULTILINE)
    data = yaml.safe_load(text)
    if name == "meta-data":
        return [data["local-hostname"]]
    if name == "user-data":
        auto = data.get("autoinstall")
        return [auto["identity"]["hostname"]] if auto else [data["hostname"]]
    return []


ANACONDA_HOSTNAME = re.compile(
    r"(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?)"
)
"""Anaconda's HOSTNAME_PATTERN_WITHOUT_ANCHORS (pyanaconda/core/regexes.py)."""
SUBIQUITY_HOSTNAME = re.compile(r"[a-z0-9_][a-z0-9_-]*")
"""subiquity's HOSTNAME_REGEX (subiquity/ui/views/identity.py), its identity form's rule."""
NETCFG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
"""The characters Debian's netcfg `valid_hostname` allows (netcfg-common.c)."""


def hostname_errors(hostname: str) -> list[str]:
    """What each installer's host name check says about `hostname` (empty: all accept it)."""
    errors = []
    if not (len(hostname) <= 64 and ANACONDA_HOSTNAME.fullmatch(hostname)):
        errors.append("Anaconda's is_valid_hostname refuses it")
    if hostname.endswith("."):
        errors.append("Anaconda refuses a local host name that ends with '.'")
    short = hostname.split(".", 1)[0]  # netcfg splits an FQDN, the rest is the domain
    if not (
        0 < len(short) <= 63 and set(short) <= NETCFG_CHARS and not short.startswith("-")
    ) or short.endswith("-"):
        errors.append("Debian's netcfg valid_hostname refuses it")
    labels = hostname.split(".")
    if not (len(hostname) <= 64 and all(SUBIQUITY_HOSTNAME.fullmatch(x) for x in labels)):
        errors.append("subiquity's host name rule (lower case) refuses a label of it")
    return errors
