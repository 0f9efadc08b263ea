"""A process-wide object created on first use, that a ``with`` block can temporarily replace."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class ActiveSlot(Generic[T]):
    """Holds the active registry or plugin manager: ``get()`` builds it lazily, ``use(x)`` swaps it."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The active object, created by the factory on first call."""
        with self._lock:
            if self._value is None:
                self._value = self._factory()
            return self._value

    @contextmanager
    def use(self, value: T) -> Iterator[T]:
        """Make ``value`` the active object inside the ``with`` block, then restore the previous one."""
        with self._lock:
            previous, self._value = self._value, value
        try:
            yield value
        finally:
            with self._lock:
                self._value = previous
