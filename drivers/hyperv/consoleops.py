"""Where an instance's consoles are (contract 1.3).

Graphical: RDP to the VM's console through the host's VMConnect service,
as nova's Hyper-V driver offers it (``get_rdp_console``): the host's
address, the port VMConnect listens on (``ListenerPort`` of WMI's
``Msvm_TerminalServiceSettingData``, 2179 unless an administrator changed
it) and, as the path, the VM's Id, which the RDP connection names to reach
that VM's console.

Serial: the VM's COM 1, which a spawn connects to the named pipe
``\\\\.\\pipe\\computed-<uuid>`` on the host (``Set-VMComPort``); the console
is that pipe, as ``Get-VMComPort`` reports it. A VM whose COM 1 has no pipe
(one made before the driver connected it, or by hand) has no serial console:
UnsupportedOperation.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from computed import exception
from computed.objects import ConsoleConnection, ConsoleKind
from drivers import base
from drivers.hyperv import constants
from drivers.hyperv import powershell as ps
from drivers.hyperv.vmops import VM, VMOps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["ConsoleOps"]


class ConsoleOps:
    """The console queries, given the served host's :class:`HostClient`."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def get_serial_console(self, client: HostClient, host: str, uuid: str) -> ConsoleConnection:
        vm = self._ready(client, host, uuid, "get_serial_console")
        found = client.run(ps.get_com_port(vm.vm_id, constants.SERIAL_PORT))
        pipe = str(found[0].get("Path") or "") if found else ""
        if not pipe:
            raise exception.UnsupportedOperation(
                operation="get_serial_console",
                driver=constants.DRIVER,
                host=host,
                detail=f"COM {constants.SERIAL_PORT} of instance {uuid} is not connected "
                "to a named pipe",
            )
        return ConsoleConnection(
            instance_uuid=vm.uuid,
            kind=ConsoleKind.SERIAL,
            protocol="pipe",
            host=_address(client),
            port=None,
            path=pipe,
            token=None,
        )

    def get_graphical_console(self, client: HostClient, host: str, uuid: str) -> ConsoleConnection:
        vm = self._ready(client, host, uuid, "get_graphical_console")
        found = client.run(ps.get_vmconnect_port())
        port = int(found[0].get("ListenerPort") or 0) if found else 0
        return ConsoleConnection(
            instance_uuid=vm.uuid,
            kind=ConsoleKind.GRAPHICAL,
            protocol="rdp",
            host=_address(client),
            port=port or constants.VMCONNECT_PORT,
            path=vm.vm_id,
            token=None,
        )

    def _ready(self, client: HostClient, host: str, uuid: str, operation: str) -> VM:
        vm = self._vmops.lookup(client, host, uuid)
        base.check_state(operation, uuid, vm.power_state, base.CONSOLE_STATES)
        return vm


def _address(client: HostClient) -> str:
    """The Hyper-V host's address: where the driver reaches it over WinRM."""
    return urlsplit(client.url).hostname or client.host
