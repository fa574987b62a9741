"""``python -m tests.winrmserver``: run the WinRM test server until interrupted.

Prints one line once listening: the first host's URL, then ``NAME=URL`` for every
host, e.g. ``http://127.0.0.1:41234/wsman HV01=http://127.0.0.1:41234/wsman``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading

from .hyperv import DEFAULT_SWITCHES, GiB, HyperVHost
from .server import WinRMTestServer, make_self_signed_cert

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.winrmserver", description=__doc__)
    parser.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="first port; 0 picks free ports (default 0)"
    )
    parser.add_argument("--user", action="append", required=True, help="accepted user (repeatable)")
    parser.add_argument(
        "--password", action="append", required=True, help="password of each --user, in order"
    )
    parser.add_argument(
        "--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this PEM cert and key"
    )
    parser.add_argument(
        "--self-signed-tls", action="store_true", help="serve HTTPS with a fresh self-signed cert"
    )
    parser.add_argument(
        "--host", action="append", default=[], help="emulated Hyper-V host name (repeatable)"
    )
    parser.add_argument(
        "--vhd",
        action="append",
        default=[],
        metavar="PATH",
        help="a 1 GiB .vhdx file every host has, e.g. an image or a volume (repeatable)",
    )
    parser.add_argument(
        "--switch",
        action="append",
        default=[],
        metavar="NAME",
        help="a virtual switch every host has, as an administrator makes one for the VMs' "
        "traffic (repeatable); without it, each host has only 'Default Switch'",
    )
    parser.add_argument(
        "--allow-unencrypted", action="store_true", help="accept Basic/unsealed NTLM over HTTP"
    )
    parser.add_argument(
        "--console-width", type=int, default=80, help="stderr error wrapping width; 0 = none"
    )
    args = parser.parse_args(argv)
    if len(args.user) != len(args.password):
        parser.error("give one --password per --user")
    tls = tuple(args.tls) if args.tls else None
    if args.self_signed_tls and tls is None:
        tls = make_self_signed_cert(tempfile.mkdtemp(prefix="winrm-tls-"))
    switches = tuple(args.switch) or DEFAULT_SWITCHES
    hosts = [HyperVHost(name, switches=switches) for name in args.host] or [
        HyperVHost(switches=switches)
    ]
    for host in hosts:
        for path in args.vhd:
            host.add_vhd(path, GiB)
    server = WinRMTestServer(
        users=dict(zip(args.user, args.password, strict=True)),
        hosts=hosts,
        tls=tls,
        bind=args.bind,
        port=args.port,
        allow_unencrypted=args.allow_unencrypted,
        console_width=args.console_width or None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        pairs = " ".join(f"{name}={url}" for name, url in server.urls.items())
        print(f"{server.url} {pairs}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
