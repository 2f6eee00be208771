"""What a DICOM node is configured with: who it is, whom it accepts, where it sends, and its limits.

A TOML file (``--config node.toml``) holds the same keys as the command-line flags (with ``_`` for ``-``);
a flag given on the command line wins over the file.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

#: An AE title: 1-16 characters of the default character repertoire, no backslash, no control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class ConfigError(ValueError):
    """A configuration the node refuses to start with; the message says which setting and why."""


@dataclass(frozen=True)
class Destination:
    """Where derived instances go: a DICOM AE (C-STORE), a DICOMweb STOW-RS URL, or a folder."""

    kind: str  # "dicom", "stow" or "folder"
    spec: str  # as written in the configuration; names the destination in the spool's records
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""
    folder: Path | None = None


def parse_destination(spec: str) -> Destination:
    """``AET@HOST:PORT`` (C-STORE), ``http(s)://...`` (STOW-RS, e.g. ``http://pacs:8042/dicom-web/studies``)
    or ``folder:PATH``."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        return Destination("stow", spec, url=spec)
    if spec.startswith("folder:"):
        path = spec.removeprefix("folder:")
        if not path:
            raise ConfigError("a folder destination needs a path: folder:PATH")
        return Destination("folder", spec, folder=Path(path).expanduser())
    match = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)", spec)
    if not match:
        raise ConfigError(f"destination {spec!r}: expected AET@HOST:PORT, http(s)://URL or folder:PATH")
    aet = check_ae_title(match["aet"], "destination AE title")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ConfigError(f"destination {spec!r}: port {port} is out of range")
    return Destination("dicom", spec, ae_title=aet, host=match["host"].strip("[]"), port=port)


def check_ae_title(value: str, what: str = "AE title") -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(f"{what} {value!r}: 1-16 printable ASCII characters, no backslash")
    return value.strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str = "CXRSR"
    host: str = "127.0.0.1"
    port: int = 11112
    spool: Path = Path("cxrsr-spool")
    weights: str | None = None  # shipped name or weights file (None: the package default)
    device: str = "auto"
    tile: int | str | None = "auto"
    forward: tuple[Destination, ...] = ()
    allow: tuple[str, ...] = ()  # calling AE titles accepted; empty: any, and only on a loopback address
    allow_hosts: tuple[str, ...] = ()  # source addresses accepted (IP or network such as 10.0.0.0/8); empty: any
    max_associations: int = 4  # associations at once; one more is rejected (local limit exceeded)
    max_pdu: int = 65536  # largest PDU the node receives, in bytes (0: no limit)
    max_pixels: int = 4096 * 4096  # input pixels (rows x columns x frames), checked from the header on arrival
    spool_budget_mb: float = 4096.0  # spool size past which new stores get 0xA700
    min_free_mb: float = 512.0  # free disk space the spool always leaves
    max_attempts: int = 10  # delivery attempts before an instance goes to failed/
    retry_base_s: float = 5.0  # first retry after this; doubled per attempt up to retry_max_s
    retry_max_s: float = 300.0
    timeout_s: float = 30.0  # network timeout towards destinations and for idle associations

    @property
    def spool_budget_bytes(self) -> int:
        return int(self.spool_budget_mb * 2**20)

    def check(self) -> "NodeConfig":
        """Raise :class:`ConfigError` for a configuration that must not start; return self."""
        check_ae_title(self.ae_title)
        for aet in self.allow:
            check_ae_title(aet, "allowed calling AE title")
        for host in self.allow_hosts:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                raise ConfigError(f"allowed host {host!r} is not an IP address or network") from None
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range")
        if not self.allow and not is_loopback(self.host):
            raise ConfigError(f"refusing to listen on {self.host} without an allow-list: any calling AE is "
                              "accepted only on a loopback address; name the senders with --allow AET")
        if not self.forward:
            raise ConfigError("no destination: give at least one --forward AET@HOST:PORT, URL or folder:PATH")
        for name in ("max_associations", "max_pixels", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_pdu < 0 or self.spool_budget_mb <= 0 or self.retry_base_s < 0 or self.retry_max_s < 0:
            raise ConfigError("max_pdu, spool_budget_mb and the retry delays must not be negative")
        return self


def read_toml(path: Path | None) -> dict[str, Any]:
    """The settings of a TOML file: keys at the top level or in a ``[node]`` table."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return values.get("node", values)


def spool_from_config(path: Path | None) -> Path:
    """The spool folder a configuration file names (the default without one)."""
    return Path(read_toml(path).get("spool", NodeConfig.spool)).expanduser()


def load_config(path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    """The configuration from a TOML file (optional) with ``overrides`` (the flags given) on top."""
    values = read_toml(path)
    values.update({k: v for k, v in overrides.items() if v is not None and v != [] and v != ()})
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    config = NodeConfig()
    try:
        if "spool" in values:
            values["spool"] = Path(values["spool"]).expanduser()
        if "forward" in values:
            values["forward"] = tuple(parse_destination(str(s)) for s in _as_list(values["forward"], "forward"))
        for key in ("allow", "allow_hosts"):
            if key in values:
                values[key] = tuple(str(v) for v in _as_list(values[key], key))
        return replace(config, **values).check()
    except TypeError as exc:
        raise ConfigError(f"bad setting: {exc}") from None


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{name} must be a string or a list of strings")
