"""Policies are small classes registered by name, so a config or widget can pick one by string."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ..config.reader import closest
from ..errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls
        return deco

    def get(self, name: str, where: str | None = None) -> type[T]:
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        near = closest(name, self._items) if isinstance(name, str) else None
        hint = f" (did you mean {near!r}?)" if near else ""
        raise InputError(f"unknown {self.kind} {name!r}{hint}; registered: {sorted(self._items)}",
                         "settings", where or self.kind)

    def names(self) -> list[str]:
        return sorted(self._items)
