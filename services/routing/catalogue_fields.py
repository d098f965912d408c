"""Typed reading of YAML data files for routing, with errors naming file, entry and field.

Shared by the matter catalogue and the organisation model.  Every error message has the shape
``<file>: <entry>: <field>: <problem>`` (entry and field left out when they do not apply), e.g.
``demo_catalogue.yaml: matter 'CC-001': workflow[2].prerequisites: unknown department 'XYZ'``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

import yaml

from services.common.errors import InvalidArgument

__all__ = [
    "DataFileError",
    "Fields",
    "Where",
    "index_entry",
    "read_yaml_text",
]

E = TypeVar("E", bound=StrEnum)

_MONEY = re.compile(r"^(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,2})?$")


class DataFileError(InvalidArgument):
    """A routing data file is invalid; ``problems`` holds one precise message per error."""

    def __init__(self, problems: Sequence[str], *, field: str | None = None, zh: str = "") -> None:
        if not problems:
            raise ValueError("a DataFileError needs at least one problem")
        self.problems: tuple[str, ...] = tuple(problems)
        # The Chinese names the file and where; the precise problems stay in the English beneath it.
        zh = zh or f"数据文件中有 {len(self.problems)} 处错误，请按下方英文说明逐项改正"
        super().__init__("\n".join(self.problems), field=field, zh=zh)

    @classmethod
    def at(cls, *, source: str, entry: str | None, field: str | None, problem: str) -> DataFileError:
        """Build an error for one problem located at file, entry and field."""
        parts = [source, *(p for p in (entry, field) if p), problem]
        where = f" 中 {field} 一项" if field else " "
        return cls([": ".join(parts)], field=field, zh=f"数据文件 {source}{where}有误，请按下方英文说明改正")


@dataclass(frozen=True, slots=True)
class Where:
    """The file and entry being read, and the error type to raise there."""

    source: str
    entry: str | None
    error: type[DataFileError]

    def fail(self, field: str | None, problem: str) -> NoReturn:
        """Raise this location's error for ``field``."""
        raise self.error.at(source=self.source, entry=self.entry, field=field, problem=problem)

    def named(self, entry: str) -> Where:
        """The same file, another entry."""
        return Where(source=self.source, entry=entry, error=self.error)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class Fields:
    """Read the fields of one mapping; unknown keys and wrong types are errors."""

    def __init__(self, data: object, *, where: Where, allowed: Collection[str], prefix: str = "") -> None:
        self.where = where
        self.prefix = prefix
        if not isinstance(data, Mapping):
            where.fail(prefix or None, f"expected a mapping, got {_type_name(data)}")
        self.data: Mapping[Any, Any] = data
        for key in data:
            if not isinstance(key, str) or key not in allowed:
                where.fail(self.path(str(key)), "unknown field")

    def path(self, name: str) -> str:
        """The dotted path of field ``name`` inside this mapping."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> NoReturn:
        """Raise an error for field ``name``."""
        self.where.fail(self.path(name), problem)

    def has(self, name: str) -> bool:
        """Whether ``name`` is present and not null."""
        return self.data.get(name) is not None

    def _required(self, name: str) -> Any:
        if name not in self.data or self.data[name] is None:
            self.fail(name, "missing required field")
        return self.data[name]

    def _typed(self, name: str, value: object, kind: type, label: str) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            hint = " (quote it)" if kind is str and isinstance(value, int | float) else ""
            self.fail(name, f"expected {label}, got {_type_name(value)} {value!r}{hint}")
        return value

    def string(self, name: str, *, pattern: re.Pattern[str] | None = None) -> str:
        """A required non-empty string, optionally matching ``pattern``."""
        value: str = self._typed(name, self._required(name), str, "a string")
        return self._check_string(name, value, pattern)

    def opt_string(self, name: str, *, pattern: re.Pattern[str] | None = None) -> str | None:
        """An optional string (null or absent gives None)."""
        if not self.has(name):
            return None
        value: str = self._typed(name, self.data[name], str, "a string")
        return self._check_string(name, value, pattern)

    def _check_string(self, name: str, value: str, pattern: re.Pattern[str] | None) -> str:
        value = value.strip()
        if not value:
            self.fail(name, "must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(name, f"{value!r} does not match {pattern.pattern}")
        return value

    def text(self, name: str, *, default: str = "") -> str:
        """An optional free text, stripped (default when absent)."""
        if not self.has(name):
            return default
        value: str = self._typed(name, self.data[name], str, "a string")
        return value.strip()

    def boolean(self, name: str, *, default: bool | None = None) -> bool:
        """A boolean; required unless a default is given."""
        if not self.has(name) and default is not None:
            return default
        value: bool = self._typed(name, self._required(name), bool, "true or false")
        return value

    def integer(self, name: str, *, minimum: int = 0, default: int | None = None) -> int:
        """An integer >= minimum; required unless a default is given."""
        if not self.has(name) and default is not None:
            return default
        value: int = self._typed(name, self._required(name), int, "an integer")
        if value < minimum:
            self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def opt_integer(self, name: str, *, minimum: int = 0) -> int | None:
        """An optional integer >= minimum."""
        return self.integer(name, minimum=minimum) if self.has(name) else None

    def choice(self, name: str, enum: type[E], *, default: E | None = None) -> E:
        """One value of a string enum."""
        if not self.has(name) and default is not None:
            return default
        value: str = self._typed(name, self._required(name), str, "a string")
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            self.fail(name, f"unknown value {value!r} (expected one of: {allowed})")

    def strings(self, name: str, *, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        """An optional list of distinct strings (absent gives an empty tuple)."""
        if not self.has(name):
            return ()
        raw: list[Any] = self._typed(name, self.data[name], list, "a list")
        seen: list[str] = []
        for index, item in enumerate(raw):
            label = f"{name}[{index}]"
            value: str = self._typed(label, item, str, "a string")
            value = self._check_string(label, value, pattern)
            if value in seen:
                self.fail(label, f"{value!r} is listed twice")
            seen.append(value)
        return tuple(seen)

    def choices(self, name: str, enum: type[E]) -> tuple[E, ...]:
        """An optional list of distinct enum values."""
        values = self.strings(name)
        result: list[E] = []
        for index, value in enumerate(values):
            try:
                result.append(enum(value))
            except ValueError:
                allowed = ", ".join(member.value for member in enum)
                self.fail(f"{name}[{index}]", f"unknown value {value!r} (expected: {allowed})")
        return tuple(result)

    def money(self, name: str) -> Decimal:
        """A non-negative amount in yuan written as a decimal string with at most 2 places."""
        value = self._required(name)
        if not isinstance(value, str):
            self.fail(
                name,
                f"bad amount {value!r}: write money as a quoted decimal string in yuan, e.g. '12.50'",
            )
        if not _MONEY.fullmatch(value.strip()):
            self.fail(
                name,
                f"bad amount {value!r}: expected a non-negative decimal in yuan with at most "
                "2 decimal places, e.g. '12.50'",
            )
        return Decimal(value.strip())

    def timestamp(self, name: str) -> datetime:
        """A timezone-aware instant, as a YAML timestamp or an ISO 8601 string."""
        value = self._required(name)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                self.fail(name, f"{value!r} is not an ISO 8601 timestamp")
        if not isinstance(value, datetime):
            self.fail(name, f"expected a timestamp, got {_type_name(value)} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail(name, f"timestamp {value.isoformat()} has no time zone")
        return value

    def items(self, name: str, *, required: bool = True) -> Iterator[tuple[int, object]]:
        """The entries of a list field, with their index."""
        if not self.has(name):
            if required:
                self.fail(name, "missing required field")
            return
        raw: list[Any] = self._typed(name, self.data[name], list, "a list")
        yield from enumerate(raw)

    def nested(self, name: str, value: object, *, allowed: Collection[str]) -> Fields:
        """Fields of a mapping nested under ``name`` (e.g. ``workflow[2]``)."""
        return Fields(value, where=self.where, allowed=allowed, prefix=self.path(name))


try:  # libyaml's parser is ~5x faster; the constructor (and its safety) is the same
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _UniqueKeyLoader(_SafeLoader):
    """A safe loader that rejects a key repeated in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml_text(text: str | bytes, *, where: Where) -> object:
    """Parse YAML safely; syntax errors and repeated keys raise ``where``'s error with a line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        where.fail(None, f"not valid YAML: {problem}{at}")
    except UnicodeDecodeError as exc:
        where.fail(None, f"not valid UTF-8 text: {exc.reason} at byte {exc.start}")


def index_entry(kind: str, index: int, data: object, key: str, pattern: re.Pattern[str]) -> str:
    """Name an entry by its code when readable (``matter 'CC-001'``), else by index."""
    if isinstance(data, Mapping):
        code = data.get(key)
        if isinstance(code, str) and pattern.fullmatch(code.strip()):
            return f"{kind} {code.strip()!r}"
    return f"{kind} #{index}"
