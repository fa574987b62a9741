"""``python -m tests.winrmserver.outofband``: change an instance on a Hyper-V host behind its worker.

Run as ``[conformance] hypervisor_command`` with its three arguments: the
action, the compute host and the instance UUID. Over WinRM (pywinrm, NTLM)
it finds the VM whose Notes carry the UUID -- as the hyperv driver labels
its VMs -- and does what a guest or an administrator would:

* ``stop``: the guest shuts itself down (``Stop-VM -Force``, a shutdown
  through the integration services);
* ``delete``: the VM is turned off and removed by hand
  (``Stop-VM -TurnOff -Force``, ``Remove-VM -Force``).

It exits non-zero, with PowerShell's error on stderr, if the host refuses
or has no such VM.
"""

from __future__ import annotations

import argparse
import json
import sys

import winrm

__all__ = ["main"]

_SCRIPTS = {
    "stop": "Get-VM -Id '{id}' | Stop-VM -Force",
    "delete": "Get-VM -Id '{id}' | Stop-VM -TurnOff -Force\nGet-VM -Id '{id}' | Remove-VM -Force",
}


def _run(session: winrm.Session, script: str) -> str:
    done = session.run_ps("$ErrorActionPreference = 'Stop'\n" + script)
    if done.status_code != 0:
        raise RuntimeError(done.std_err.decode("utf-8", errors="replace").rstrip())
    return str(done.std_out.decode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.winrmserver.outofband", description=__doc__
    )
    parser.add_argument("--url", required=True, help="WinRM URL of the Hyper-V host")
    parser.add_argument("--user", required=True, help="account that may run the Hyper-V cmdlets")
    parser.add_argument("--password", required=True, help="the account's password")
    parser.add_argument("action", choices=sorted(_SCRIPTS))
    parser.add_argument("host", help="the compute host (the URL names its Hyper-V host)")
    parser.add_argument("uuid", help="the instance's UUID")
    args = parser.parse_args(argv)
    session = winrm.Session(args.url, auth=(args.user, args.password), transport="ntlm")
    try:
        listed = _run(session, "Get-VM | Select-Object -Property Id,Notes | ConvertTo-Json")
        vms = json.loads(listed) if listed.strip() else []
        vms = vms if isinstance(vms, list) else [vms]
        found = [vm["Id"] for vm in vms if args.uuid in str(vm.get("Notes") or "")]
        if len(found) != 1:
            raise RuntimeError(f"{len(found)} VMs of instance {args.uuid} on {args.host}")
        _run(session, _SCRIPTS[args.action].format(id=found[0]))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
