"""Name -> constructor registries (encoders, datasets, augmentations, optimizers).

params.yaml names a component; adding one is one function plus `@REGISTRY.register("name")`.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named table of constructors with a helpful error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self._table:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._table[name] = fn
            return fn

        return add

    def get(self, name: str) -> F:
        if name not in self._table:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._table[name]

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table
