"""Locks keyed by a string, kept only while someone holds or waits for them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """One lock per key (an instance UUID, say), forgotten when unused."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            self._forget(key)

    @contextlib.contextmanager
    def try_hold(self, key: str) -> Iterator[bool]:
        """Hold the key's lock if it is free: yields True if held, False if busy."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            held = lock.acquire(blocking=False)
            if held:
                self._locks[key] = (lock, users + 1)
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
            self._forget(key)

    def _forget(self, key: str) -> None:
        """One user fewer of the key's lock; the lock goes with its last user."""
        with self._guard:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
