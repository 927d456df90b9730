"""A small registry, one per extension point (timm's ``register_model`` / ``create_model``).

    TEACHERS = Registry("teacher")

    @TEACHERS.register("clip")
    class ClipTeacher: ...

    teacher = TEACHERS.create("clip", config)
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from knowledge.errors import NanofactoryError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise NanofactoryError(
                f"Unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}."
            ) from None

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
