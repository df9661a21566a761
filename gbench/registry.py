"""Name -> object registries filled through the plugin hooks."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from gbench.errors import GbenchError

T = TypeVar("T")
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    plugin: str
    description: str = ""


class Registry(Generic[T]):
    """A validated mapping of lowercase names to objects, remembering the plugin of each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, plugin: str, description: str = "") -> None:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise GbenchError(
                f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r} "
                "(use lowercase letters, digits, '-', '_' or '.')"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise GbenchError(f"{self.kind} {name!r} is registered twice: by {other!r} and by {plugin!r}")
        self._entries[name] = Entry(name, obj, plugin, description)

    def discard_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (it failed part-way)."""
        self._entries = {n: e for n, e in self._entries.items() if e.plugin != plugin}

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise GbenchError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)
