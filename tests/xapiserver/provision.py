"""Make (or grow) a volume on the xapi test server's storage, as a storage service would.

    python -m tests.xapiserver.provision --url URL [--portal HOST:PORT] VOLUME_ID SIZE_GB
    python -m tests.xapiserver.provision --url URL --extend VOLUME_ID SIZE_GB

The storage array behind the pool exports each volume as LUN 1 of a target
of its own, ``iqn.2010-10.org.computed:volume-<id>`` at ``--portal`` (as
cinder's LVM driver does through tgt or LIO), made through the server's
``testing.add_iscsi_lun``: the array's side, not xapi's, so the pool sees
the LUN only once a driver introduces, plugs and scans an SR of that
target. It prints the volume's connection info as a storage service hands
it to a compute host::

    {"driver_volume_type": "iscsi", "data": {"target_portal": ..., "target_iqn": ...,
     "target_lun": 1, "target_discovered": false, "volume_id": ...}}

``--extend`` grows the volume's LUN to SIZE_GB (``testing.resize_iscsi_lun``)
and prints nothing; xapi sees the new size at the next ``SR.scan``. This is
``[conformance] volume_command`` (and ``volume_extend_command``) for the
xenapi driver.
"""

from __future__ import annotations

import argparse
import json
import sys
import xmlrpc.client
from typing import Any

__all__ = ["DEFAULT_PORTAL", "LUN", "connection_info", "main", "target_iqn"]

#: The array's portal (TEST-NET-2, never routed): the pool reaches it only in name.
DEFAULT_PORTAL = "198.51.100.20:3260"
#: tgt and LIO export a volume as LUN 1 of its target (LUN 0 is the controller).
LUN = 1
_GiB = 1024**3


def target_iqn(volume_id: str) -> str:
    return f"iqn.2010-10.org.computed:volume-{volume_id}"


def connection_info(volume_id: str, portal: str) -> dict[str, Any]:
    """What a storage service returns from initialize_connection for the volume."""
    return {
        "driver_volume_type": "iscsi",
        "data": {
            "target_portal": portal,
            "target_iqn": target_iqn(volume_id),
            "target_lun": LUN,
            "target_discovered": False,
            "volume_id": volume_id,
        },
    }


def _testing(url: str, method: str, *params: str) -> Any:
    """Call ``testing.<method>``, unwrapping xapi's reply envelope.

    :raises RuntimeError: on a failure reply.
    """
    with xmlrpc.client.ServerProxy(url, allow_none=False) as proxy:
        reply = getattr(proxy.testing, method)(*params)
    if reply.get("Status") != "Success":
        raise RuntimeError(f"testing.{method} failed: {reply.get('ErrorDescription')}")
    return reply.get("Value")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.xapiserver.provision",
        description="Make (or grow) an iSCSI volume on the xapi test server's storage array "
        "and print its connection info.",
    )
    parser.add_argument("--url", required=True, help="URL of the pool (the server's READY line)")
    parser.add_argument(
        "--portal", default=DEFAULT_PORTAL, help=f"HOST:PORT of the array ({DEFAULT_PORTAL})"
    )
    parser.add_argument(
        "--extend", action="store_true", help="grow the volume's LUN instead of making one"
    )
    parser.add_argument("volume_id")
    parser.add_argument("size_gb", type=int, help="size in GiB (at least 1)")
    args = parser.parse_args(argv)
    if args.size_gb < 1:
        parser.error("size_gb must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = str(args.size_gb * _GiB)
    iqn = target_iqn(args.volume_id)
    try:
        if args.extend:
            _testing(args.url, "resize_iscsi_lun", iqn, str(LUN), size)
        else:
            _testing(args.url, "add_iscsi_lun", iqn, args.portal, str(LUN), size)
    except (OSError, xmlrpc.client.Error, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.extend:
        print(json.dumps(connection_info(args.volume_id, args.portal)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
