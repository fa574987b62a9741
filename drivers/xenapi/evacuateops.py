"""Evacuation: the instance of a compute host no worker serves, brought up on another.

On the destination, the VM of the dead compute host is taken over when the
destination's xapi host sees its disks (the pool's shared storage):

* a VM xapi still shows Running or Paused on a dead xapi host (its
  heartbeat stopped) is ``VM.power_state_reset``, which xapi allows then
  only; on a xapi host that is alive (only the worker died) a running VM is
  moved live instead (``VM.pool_migrate``) and never stops;
* the VM is given to the destination (:func:`~drivers.xenapi.moves.rehome`)
  and ``VM.start_on`` its xapi host, unless it is to stay stopped.

From the moment it is the destination's, the old compute host lists
nothing of it, so the worker that next serves that host does not destroy
it. A VM whose disks the destination cannot see (local storage of the
dead host) is left where it is and the instance is built afresh from
``migration.spec``, as a spawn does; the worker that next serves the old
host destroys the old VM, which it still lists.
"""

from __future__ import annotations

import logging

from computed.objects import InstanceInfo, Migration, PowerState
from drivers.xenapi import constants, moves
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, resolve_host

__all__ = ["EvacuateOps"]

LOG = logging.getLogger(__name__)

_LIVE_STATES = ("Running", "Paused")


class EvacuateOps:
    """The evacuation step."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def evacuate(self, session: PoolSession, target: Target, migration: Migration) -> InstanceInfo:
        uuid = migration.instance_uuid
        if moves.find(session, uuid, host=target.host) is not None:
            return self._vmops.get_info(session, target, uuid)
        host_ref = resolve_host(session, target)
        old = moves.find(session, uuid, host=migration.source_host)
        if old is not None and moves.disks_reachable(session, old[1], host_ref):
            self._take_over(session, target, host_ref, old[0], migration)
        else:
            assert migration.spec is not None  # Migration.validate requires it
            self._vmops.spawn(session, target, migration.spec)
            LOG.info("%s: rebuilt from its image", migration.describe())
        info = self._vmops.get_info(session, target, uuid)
        if migration.power_state == PowerState.STOPPED and info.power_state != PowerState.STOPPED:
            info = self._vmops.transition(session, target, uuid, "power_off")
        return info

    def _take_over(
        self, session: PoolSession, target: Target, host_ref: str, vm: str, migration: Migration
    ) -> None:
        record = session.call("VM.get_record", vm)
        resident = record["resident_on"]
        running_elsewhere = record["power_state"] in _LIVE_STATES and resident not in (
            constants.NULL_REF,
            host_ref,
        )
        if running_elsewhere and moves.host_live(session, resident):
            if record["power_state"] == "Running":
                session.run_task("VM.pool_migrate", vm, host_ref, {"live": "true"})
            else:
                session.run_task("VM.hard_shutdown", vm)
        elif running_elsewhere:
            session.call("VM.power_state_reset", vm)
        moves.rehome(session, vm, target.host, host_ref)
        if (
            migration.power_state == PowerState.RUNNING
            and session.call("VM.get_power_state", vm) == constants.XAPI_HALTED
        ):
            session.run_task("VM.start_on", vm, host_ref, False, False)
        LOG.info("%s: its VM taken over on shared storage", migration.describe())
