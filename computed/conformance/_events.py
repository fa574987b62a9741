"""Checks of instance events: changes made on the hypervisor, not by an operation.

The suite makes them with ``[conformance] hypervisor_command`` (a guest
that shuts itself down, an instance removed out of band) and waits for the
worker to publish them, from its driver's hypervisor events or its
periodic look (``[notifications] instance_sync_interval``): the notification
timeout must outlast that interval on a driver without events.
"""

from __future__ import annotations

from computed.conformance._check import Check, registrar
from computed.conformance._context import CheckFailed, SuiteContext, expect
from computed.objects import InstanceStatePayload, PowerState
from computed.testing.notifications import NotificationCollector

__all__ = ["EVENT_CHECKS"]

EVENT_CHECKS: list[Check] = []
check = registrar(EVENT_CHECKS)


def _published(
    ctx: SuiteContext, collector: NotificationCollector, uuid: str, event_type: str
) -> InstanceStatePayload:
    """The payload of the ``event_type`` change of ``uuid``, once the worker publishes it.

    :raises CheckFailed: if it does not within the notification timeout.
    """
    try:
        return collector.change_of(uuid, event_type, ctx.notification_timeout).payload
    except TimeoutError as exc:
        raise CheckFailed(str(exc)) from None


@check(
    "events.stopped_by_itself",
    "a guest that shuts itself down is published as instance.power_state.update, "
    "running to stopped, and get_info agrees",
)
def _stopped(ctx: SuiteContext) -> None:
    ctx.require("get_info")
    collector = ctx.require_notifications()
    with ctx.instance("selfstop") as info:
        ctx.behind_the_back("stop", ctx.host, info.uuid)
        payload = _published(ctx, collector, info.uuid, "instance.power_state.update")
        expect(
            (payload.old_state, payload.new_state) == (PowerState.RUNNING, PowerState.STOPPED),
            f"the change says {payload.old_state} -> {payload.new_state}",
        )
        expect(payload.host == ctx.host, f"the change names host {payload.host}")
        expect(payload.source in ("hypervisor", "poll"), f"the change's source is {payload.source}")
        state = ctx.api.get_info(None, ctx.host, info.uuid).power_state
        expect(state == PowerState.STOPPED, f"get_info says {state}")


@check(
    "events.deleted_out_of_band",
    "an instance removed on the hypervisor is published as instance.delete, and is "
    "no longer listed",
)
def _deleted(ctx: SuiteContext) -> None:
    ctx.require("list_instances")
    collector = ctx.require_notifications()
    with ctx.instance("oobdelete") as info:
        ctx.behind_the_back("delete", ctx.host, info.uuid)
        payload = _published(ctx, collector, info.uuid, "instance.delete")
        expect(payload.new_state is None, f"instance.delete says {payload.new_state}")
        listed = [i.uuid for i in ctx.api.list_instances(None, ctx.host)]
        expect(info.uuid not in listed, "the removed instance is still listed")
