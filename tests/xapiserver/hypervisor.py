"""Change an instance on the xapi test server behind its worker's back.

    python -m tests.xapiserver.hypervisor --url URL --user USER --password PW stop HOST UUID
    python -m tests.xapiserver.hypervisor --url URL --user USER --password PW delete HOST UUID

(or ``python tests/xapiserver/hypervisor.py``; standard library only.)
``stop``: the guest shuts itself down, as a guest's poweroff reaches xapi
(``testing.set_power_state``, Halted). ``delete``: an administrator
uninstalls the VM with its own session, as ``xe vm-uninstall`` does:
``VM.hard_shutdown`` unless halted, ``VDI.destroy`` of its disks,
``VM.destroy``. The instance's VM is the one the xenapi driver names
``computed-<uuid>`` for compute host HOST. This is ``[conformance]
hypervisor_command`` for the xenapi driver (tests/peers.py).
"""

from __future__ import annotations

import argparse
import sys
import xmlrpc.client
from typing import Any

__all__ = ["main"]

ACTIONS = ("stop", "delete")


class XapiFailure(Exception):
    """xapi answered a failure: its error description."""


def _value(reply: Any) -> Any:
    """The value of an xapi reply envelope."""
    if reply.get("Status") != "Success":
        raise XapiFailure(reply.get("ErrorDescription"))
    return reply.get("Value")


def _find_vm(proxy: Any, session: str, host: str, uuid: str) -> str:
    for vm in _value(proxy.VM.get_by_name_label(session, f"computed-{uuid}")):
        other = _value(proxy.VM.get_other_config(session, vm))
        if other.get("computed_uuid") == uuid and other.get("computed_host") == host:
            return str(vm)
    raise XapiFailure(["no VM of instance", uuid, "on host", host])


def _uninstall(proxy: Any, session: str, vm: str) -> None:
    if _value(proxy.VM.get_power_state(session, vm)) != "Halted":
        _value(proxy.VM.hard_shutdown(session, vm))
    for vbd in _value(proxy.VM.get_VBDs(session, vm)):
        record = _value(proxy.VBD.get_record(session, vbd))
        if record["type"] == "Disk" and not record["empty"]:
            _value(proxy.VDI.destroy(session, record["VDI"]))
    _value(proxy.VM.destroy(session, vm))


def change(url: str, user: str, password: str, action: str, host: str, uuid: str) -> None:
    """Make ``action`` happen to the instance ``uuid`` of ``host``.

    :raises XapiFailure: if xapi refuses, or the instance has no VM.
    """
    with xmlrpc.client.ServerProxy(url, allow_none=False) as proxy:
        session = _value(proxy.session.login_with_password(user, password, "2.0", "hypervisor"))
        try:
            vm = _find_vm(proxy, session, host, uuid)
            if action == "stop":
                _value(proxy.testing.set_power_state(vm, "Halted"))
            else:
                _uninstall(proxy, session, vm)
        finally:
            proxy.session.logout(session)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.xapiserver.hypervisor",
        description="Stop or delete an instance's VM on the xapi test server, as its guest "
        "or an administrator would, behind its worker's back.",
    )
    parser.add_argument("--url", required=True, help="URL of the pool (the server's READY line)")
    parser.add_argument("--user", required=True, help="a user of the pool")
    parser.add_argument("--password", required=True, help="that user's password")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("host", help="the compute host the instance belongs to")
    parser.add_argument("uuid", help="the instance's UUID")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        change(args.url, args.user, args.password, args.action, args.host, args.uuid)
    except (OSError, xmlrpc.client.Error, XapiFailure) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
