"""One registry type for every extension point (regularisers, importance methods, data and
backbone sources): entries by name, registered once, looked up with an error naming the
parameter and the choices."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(dict[str, Entry], Generic[Entry]):
    """``name -> entry`` (each entry has a ``name``); ``parameter`` is the key that selects one."""

    def __init__(self, parameter: str) -> None:
        super().__init__()
        self.parameter = parameter

    def register(self, entry: Entry) -> Entry:
        name = entry.name  # type: ignore[attr-defined]
        if name in self and self[name] != entry:
            raise ValueError(f"{self.parameter}: {name!r} is already registered")
        self[name] = entry
        return entry

    def entry(self, name: Any) -> Entry:
        if name not in self:
            raise ValueError(f"Unknown {self.parameter} {name!r}; valid: {', '.join(self)}.")
        return self[name]
