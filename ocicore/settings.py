"""Layered settings for every Wharf component: defaults < TOML file < environment < flags.

A component's settings are a frozen dataclass; each field has one name used everywhere:
``data_dir`` in the component's table of the file (``[origin]``, ``[edge]``),
``WHARF_<COMPONENT>_DATA_DIR`` in the environment and ``--data-dir`` on the command line.
Nested tables (``[origin.ldap]``) become the dataclasses named in ``tables``; sizes may be
written ``20GiB``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="ServerSettings")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":port" means all


def parse_size(text: str) -> int:
    """``20GiB``, ``512MiB``, ``1.5G``, ``1048576`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (try 20GiB)")
    unit = (match[2] or "").upper()[:1]
    return int(float(match[1]) * _UNITS[unit])


def boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {text!r}")


class ServerSettings:
    """What every server's settings share: where to listen, how much to log, what must be
    positive. Mixed into the components' frozen dataclasses, which define the fields."""

    listen: str
    log_level: str
    table: ClassVar[str]  # "origin", "edge": its table in the file, its WHARF_<TABLE>_ prefix
    tables: ClassVar[Mapping[str, Any]] = MappingProxyType({})  # nested tables, by field

    @classmethod
    def load(
        cls: type[S],
        file: Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> S:
        return load(cls, cls.table, file, env, overrides, cls.tables)

    def check(self, positive: Sequence[str]) -> None:
        parse_listen(self.listen)
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"log_level must be debug, info, warning or error: {self.log_level}")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]


def load(
    cls: type[T],
    table: str,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    tables: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from its defaults, ``[table]`` of ``file``, ``WHARF_<TABLE>_*`` variables
    of ``env`` and ``overrides`` (None values ignored), later winning."""
    values: dict[str, Any] = {}
    if file is not None:
        with file.open("rb") as f:
            values.update(tomllib.load(f).get(table, {}))
    prefix = f"WHARF_{table.upper()}_"
    for key, value in (env or {}).items():
        if key.startswith(prefix):
            values[key[len(prefix) :].lower()] = value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return cls(**_coerce(cls, table, values, tables or {}))


def _tables(kind: Any, where: str, value: Any) -> Any:
    """A nested table (``[t.x]``) as ``kind``, or a list of them (``[[t.x]]``) as a tuple."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{where} must be a table ([{where}] or [[{where}]])")
    try:
        built = tuple(kind(**item) for item in items)
    except TypeError as exc:
        raise ValueError(f"[{where}]: {exc}") from None
    return built if isinstance(value, list) else built[0]


def _coerce(
    cls: type[Any], table: str, values: dict[str, Any], tables: Mapping[str, Any]
) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {table} settings: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in tables:
            out[name] = _tables(tables[name], f"{table}.{name}", value)
            continue
        default: Any = fields[name].default
        kind = type(default)
        if kind is bool and isinstance(value, str):
            out[name] = boolean(name, value)
        elif ("size" in name or "_bytes" in name) and isinstance(value, str):
            out[name] = parse_size(value)
        elif kind is tuple and isinstance(value, str):  # a list in the environment: a,b,c
            out[name] = tuple(item.strip() for item in value.split(",") if item.strip())
        else:
            out[name] = value if isinstance(value, kind) else kind(value)
    return out
