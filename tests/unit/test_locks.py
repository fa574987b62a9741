"""Locks keyed by instance UUID: held, tried, and forgotten once unused."""

from __future__ import annotations

import threading

from computed._locks import KeyedLocks


def test_a_tried_lock_is_refused_while_held_and_taken_once_free() -> None:
    locks = KeyedLocks()
    with locks.hold("a"):
        with locks.try_hold("a") as held:
            assert not held
        with locks.try_hold("b") as other:
            assert other and len(locks) == 2
    with locks.try_hold("a") as held:
        assert held
    assert len(locks) == 0


def test_a_waiter_gets_the_lock_a_try_held() -> None:
    locks = KeyedLocks()
    entered = threading.Event()

    def wait_for_it() -> None:
        with locks.hold("a"):
            entered.set()

    with locks.try_hold("a") as held:
        assert held
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not entered.wait(0.1)  # blocked behind the tried hold
    assert entered.wait(30)
    waiter.join(30)
    assert len(locks) == 0
