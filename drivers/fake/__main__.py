"""Change the fake hypervisor behind its workers' backs, as a guest or an administrator would.

::

    python -m drivers.fake --state-dir DIR stop HOST UUID     # the guest shuts itself down
    python -m drivers.fake --state-dir DIR delete HOST UUID   # removed out of band

For a fake hypervisor kept in files (``[fake] state_dir``); the workers
serving the host see the change at their next look, and publish it. It is
also the conformance suite's ``[conformance] hypervisor_command`` for the
fake driver.
"""

from __future__ import annotations

import argparse
import sys

from computed.objects import PowerState
from drivers.fake._store import FileStore, StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drivers.fake", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--state-dir", required=True, help="the workers' [fake] state_dir")
    parser.add_argument("action", choices=["stop", "delete"])
    parser.add_argument("host")
    parser.add_argument("uuid")
    args = parser.parse_args(argv)
    store = FileStore(args.state_dir)
    try:
        with store.changing(args.host) as instances:
            if args.uuid not in instances:
                print(f"no instance {args.uuid} on {args.host}", file=sys.stderr)
                return 1
            if args.action == "delete":
                del instances[args.uuid]
            else:
                instance = instances[args.uuid]
                instance.power_state = PowerState.STOPPED
                instance.log("reboot: Power down")
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
