"""Moving VMs between the hosts of a pool, and hosts that die.

What the messages check, and in which order, follows xen-api:

* ``VM.pool_migrate(vm, host, options)`` (message_forwarding.ml,
  xapi_vm_migrate.ml): the operation ``pool_migrate`` must be valid (the
  VM ``Running``: ``VM_BAD_POWER_STATE [vm, "running", actual]``); the
  destination must be live (``HOST_OFFLINE [host]``), another host than
  the one the VM runs on (here ``OPERATION_NOT_ALLOWED [reason]``; what
  xapi answers there is not modelled), able to see every SR of the VM's
  disks (``VM_REQUIRES_SR [vm, sr]``) and to hold its memory
  (``HOST_NOT_ENOUGH_FREE_MEMORY [needed, available]``).
  The memory is then copied while the task's ``progress`` rises
  (:meth:`PoolState.copy_progress`: holdable, and ``task.cancel`` ends it
  ``TASK_CANCELLED`` with the VM still running where it was); at the end
  the domain runs on the destination (new domid, its console served there).
  ``options`` ``live`` is accepted and, as in xapi, changes nothing here.
* ``VM.power_state_reset(vm)`` (xapi_vm.ml): a control domain is
  ``CANNOT_RESET_CONTROL_DOMAIN [vm]``; a Running or Paused VM resident on
  a live host is refused, ``DOMAIN_EXISTS [vm]`` on the master (whose
  xenopsd still runs the domain), ``HOST_IS_LIVE [host]`` elsewhere; else it
  is forced Halted.
* A host marked dead (:func:`set_host_live`; ``testing.set_host_live``) has
  ``host_metrics.live`` and ``enabled`` false, as xapi shows a host whose
  heartbeat stopped; its VMs stay Running and resident on it in the
  database until ``power_state_reset``. Nothing starts on it
  (``HOST_OFFLINE [host]``).

Not modelled: ``VM.migrate_send`` and ``host.migrate_receive`` (moves
between pools, with their storage), ``VM.assert_can_migrate``, CPU feature
checks, and the network attachment of the destination.
"""

from __future__ import annotations

from typing import Any

from . import errors as E
from . import vmops
from .errors import XapiError
from .state import Call, PoolState

HOST_IS_LIVE = "HOST_IS_LIVE"
DOMAIN_EXISTS = "DOMAIN_EXISTS"
VM_REQUIRES_SR = "VM_REQUIRES_SR"
CANNOT_RESET_CONTROL_DOMAIN = "CANNOT_RESET_CONTROL_DOMAIN"
SAME_HOST = "Host is the same as the VM's resident_on"


def set_host_live(pool: PoolState, host_ref: str, live: bool) -> None:
    """The host's heartbeat stops (or comes back): ``live`` and ``enabled`` follow."""
    with pool.lock:
        host = pool.get("host", host_ref)
        pool.update("host_metrics", host["metrics"], live=live)
        pool.update("host", host_ref, enabled=live)


def host_by_name(pool: PoolState, name: str) -> str:
    """The ref of the host named ``name`` (or ``name`` itself if it is a host ref)."""
    with pool.lock:
        if pool.exists("host", name):
            return name
        for ref, host in pool.items("host"):
            if host["name_label"] == name:
                return ref
    raise XapiError(E.UUID_INVALID, "host", name)


def _sr_reachable(pool: PoolState, sr_ref: str, host_ref: str) -> bool:
    pbds = (pool.get("PBD", p) for p in pool.get("SR", sr_ref)["PBDs"] if pool.exists("PBD", p))
    return any(p["host"] == host_ref and p["currently_attached"] for p in pbds)


def _check_destination(pool: PoolState, ref: str, vm: dict[str, Any], host_ref: str) -> None:
    pool.get("host", host_ref)
    vmops.assert_live(pool, host_ref)
    if vm["resident_on"] == host_ref:
        raise XapiError(E.OPERATION_NOT_ALLOWED, SAME_HOST)
    for vdi in vmops.disks(pool, vm):
        sr = pool.get("VDI", vdi)["SR"]
        if not _sr_reachable(pool, sr, host_ref):
            raise XapiError(VM_REQUIRES_SR, ref, sr)
    need, free = pool.vm_memory_need(vm), pool.host_free_memory(host_ref)
    if free < need:
        raise XapiError(E.HOST_NOT_ENOUGH_FREE_MEMORY, need, free)


def pool_migrate(call: Call, ref: str, host_ref: str, options: dict[str, str]) -> None:
    pool = call.pool
    with vmops.vm_operation(call, ref, "pool_migrate") as vm:
        _check_destination(pool, ref, vm, host_ref)
        pool.copy_progress(call)  # the memory, page by page; cancellable meanwhile
        vm = pool.get("VM", ref)
        _check_destination(pool, ref, vm, host_ref)
        vmops.move_domain(pool, ref, vm, host_ref)


def power_state_reset(call: Call, ref: str) -> None:
    pool = call.pool
    with pool.lock:
        vm = pool.get("VM", ref)
        if vm["is_control_domain"]:
            raise XapiError(CANNOT_RESET_CONTROL_DOMAIN, ref)
        resident = vm["resident_on"]
        if vm["power_state"] in ("Running", "Paused") and pool.exists("host", resident):
            if resident == pool.master_ref and vmops.host_live(pool, resident):
                raise XapiError(DOMAIN_EXISTS, ref)
            if vmops.host_live(pool, resident):
                raise XapiError(HOST_IS_LIVE, resident)
        vmops.halt(pool, ref, vm)
        pool.refresh_host_metrics()


HANDLERS: dict[str, tuple[tuple[tuple[str, str], ...], Any, bool]] = {
    "pool_migrate": (
        (("vm", "ref"), ("host", "ref"), ("options", "map")),
        pool_migrate,
        True,
    ),
    "power_state_reset": ((("vm", "ref"),), power_state_reset, True),
}

__all__ = [
    "HANDLERS",
    "HOST_IS_LIVE",
    "host_by_name",
    "set_host_live",
]
