"""Which worker owns which host: a consistent hash ring per host over its candidates.

The candidates of a host are the live, enabled workers of one pool (same
driver, same group) that declare the host. Each host gets the ring of its own
candidates (tooz's :class:`~tooz.hashring.HashRing`), so a worker that
joins or leaves moves only the hosts whose ring it enters or leaves: about
its share, never a reshuffle of the others. Every worker computes the same
answer from the same registry snapshot, with no coordination.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from tooz import hashring

from computed.registry import WorkerRecord
from computed.registry.api import WorkerState

__all__ = [
    "candidates",
    "owner",
    "owned_by",
    "assignment",
    "fingerprint",
    "running",
    "next_expiry",
]

#: What ownership depends on, of every worker: see :func:`fingerprint`.
Fingerprint = tuple[tuple[object, ...], ...]


def candidates(
    host: str,
    pool: tuple[str, str],
    workers: Iterable[WorkerRecord],
    down_time: float,
    now: datetime.datetime,
) -> list[str]:
    """Ids of the live, enabled workers of ``pool`` that declare ``host``, sorted."""
    return sorted(
        w.id for w in workers if w.pool == pool and host in w.hosts and w.is_alive(down_time, now)
    )


def owner(host: str, candidate_ids: Iterable[str]) -> str | None:
    """The owner of ``host`` among ``candidate_ids``, or None if there is none."""
    ids = sorted(set(candidate_ids))
    if not ids:
        return None
    if len(ids) == 1:
        return ids[0]
    ring = _ring(tuple(ids))
    (chosen,) = ring.get_nodes(host.encode("utf-8"))
    return str(chosen)


def assignment(
    workers: Iterable[WorkerRecord], down_time: float, now: datetime.datetime
) -> dict[str, tuple[str | None, list[str]]]:
    """``{host: (owner, candidates)}`` over every host some worker declares.

    Each host's candidates are those of the first of its pools (in order)
    that has a live one. One pass over the declarations, not one per host.
    """
    declared: dict[str, dict[tuple[str, str], list[str]]] = {}
    for worker in workers:
        alive = worker.is_alive(down_time, now)
        for host in worker.hosts:
            ids = declared.setdefault(host, {}).setdefault(worker.pool, [])
            if alive:
                ids.append(worker.id)
    result: dict[str, tuple[str | None, list[str]]] = {}
    for host, by_pool in sorted(declared.items()):
        live: list[str] = []
        for pool in sorted(by_pool):
            live = sorted(by_pool[pool])
            if live:
                break
        result[host] = (owner(host, live), live)
    return result


def owned_by(
    me: WorkerRecord, workers: Iterable[WorkerRecord], down_time: float, now: datetime.datetime
) -> set[str]:
    """The hosts ``me`` owns, given the registry's ``workers`` (``me`` counted as live).

    A host declared in several pools belongs to the first of them (in order)
    with a live worker, as in :func:`assignment`: ``me`` owns none that a
    live worker of an earlier pool declares.

    Linear in the hosts ``me`` declares times the workers: each other
    worker's hosts are looked up in a set, not scanned.
    """
    live = [w for w in workers if w.id != me.id and w.is_alive(down_time, now)]
    rivals = [(w.id, frozenset(w.hosts)) for w in live if w.pool == me.pool]
    ahead = [frozenset(w.hosts) for w in live if w.pool < me.pool]
    return {
        host
        for host in me.hosts
        if not any(host in hosts for hosts in ahead)
        and owner(host, [me.id, *(i for i, hosts in rivals if host in hosts)]) == me.id
    }


def fingerprint(
    states: Iterable[WorkerState], down_time: float, now: datetime.datetime
) -> Fingerprint:
    """Equal whenever the ownership computed from the registry is equal.

    Ownership, and who may still be running, depend on each worker's pool,
    state, disabled flag, process and declared hosts (which change only
    when it registers, stamping ``started_at``), and on whether its last
    heartbeat is within ``down_time`` at ``now``: not on the heartbeat's
    time itself, which moves at every beat.
    """
    return tuple(
        (
            s.id,
            s.driver,
            s.group,
            s.pid,
            s.state,
            bool(s.disabled),
            s.started_at,
            s.fresh(down_time, now),
        )
        for s in states
    )


def running(
    states: Iterable[WorkerState], down_time: float, now: datetime.datetime
) -> set[tuple[str, int]]:
    """``(id, pid)`` of the workers that may still be consuming or operating."""
    return {(s.id, s.pid) for s in states if s.may_be_running(down_time, now)}


def next_expiry(
    states: Iterable[WorkerState], driver: str, me: str, down_time: float, now: datetime.datetime
) -> float | None:
    """Seconds from ``now`` until the first live worker of ``driver`` other than
    ``me`` counts as down if it heartbeats no more; None if there is none.

    Ownership changes then with nothing written to the registry: a worker that
    looks again at that moment, rather than at its next heartbeat interval,
    takes a dead worker's hosts over ``heartbeat_interval`` sooner.
    """
    left = [
        down_time - (now - s.heartbeat_at).total_seconds()
        for s in states
        if s.driver == driver and s.id != me and s.fresh(down_time, now)
    ]
    return min(left) if left else None


_RINGS: dict[tuple[str, ...], hashring.HashRing] = {}


def _ring(ids: tuple[str, ...]) -> hashring.HashRing:
    ring = _RINGS.get(ids)
    if ring is None:
        if len(_RINGS) > 256:
            _RINGS.clear()
        ring = _RINGS[ids] = hashring.HashRing(ids)
    return ring
