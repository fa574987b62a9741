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

__all__ = ["candidates", "owner", "owned_by", "assignment"]


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
    """``{host: (owner, candidates)}`` over every host some worker declares."""
    workers = list(workers)
    result: dict[str, tuple[str | None, list[str]]] = {}
    pools: dict[str, set[tuple[str, str]]] = {}
    for worker in workers:
        for host in worker.hosts:
            pools.setdefault(host, set()).add(worker.pool)
    for host, host_pools in sorted(pools.items()):
        ids: list[str] = []
        for pool in sorted(host_pools):
            ids = candidates(host, pool, workers, down_time, now)
            if ids:
                break
        result[host] = (owner(host, ids), ids)
    return result


def owned_by(
    me: WorkerRecord, workers: Iterable[WorkerRecord], down_time: float, now: datetime.datetime
) -> set[str]:
    """The hosts ``me`` owns, given the registry's ``workers`` (``me`` counted as live)."""
    others = [w for w in workers if w.id != me.id]
    return {
        host
        for host in me.hosts
        if owner(host, [me.id, *candidates(host, me.pool, others, down_time, now)]) == me.id
    }


_RINGS: dict[tuple[str, ...], hashring.HashRing] = {}


def _ring(ids: tuple[str, ...]) -> hashring.HashRing:
    ring = _RINGS.get(ids)
    if ring is None:
        if len(_RINGS) > 256:
            _RINGS.clear()
        ring = _RINGS[ids] = hashring.HashRing(ids)
    return ring
