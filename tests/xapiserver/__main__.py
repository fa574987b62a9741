"""Run the xapi test server as a process.

    python -m tests.xapiserver --port 0 --pool NAME:user:password[:host,...] \
        [--pool ...] [--tls CERT KEY | --tls-self-signed] [--session-ttl SECONDS] \
        [--image NAME[:MiB] ...]

When listening it prints one line, ``READY name=url [name=url ...]``, and
serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import XapiTestServer
from .state import PoolSpec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.xapiserver", description="xapi XML-RPC test server"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="first pool's port; later pools take the next ones; 0 = any",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME:user:password[:host1,host2,...] (repeatable)",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS")
    tls.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="serve HTTPS with a freshly made self-signed certificate",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=None,
        help="idle seconds after which a session is invalid",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        type=_image,
        metavar="NAME[:MiB]",
        help="an image every pool has imported into its default SR: a VDI of that "
        "name, 1024 MiB unless given (repeatable)",
    )
    parser.add_argument(
        "--no-testing-api", action="store_true", help="do not serve the testing.* control namespace"
    )
    args = parser.parse_args(argv)
    if not args.pool:
        args.pool = ["pool1:root:password"]
    return args


def _image(text: str) -> tuple[str, int]:
    name, _, mib = text.partition(":")
    try:
        size = int(mib or 1024) * 1024 * 1024
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME[:MiB]") from None
    if not name or size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME[:MiB]")
    return name, size


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = [PoolSpec.parse(p) for p in args.pool]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tls: bool | tuple[str, str] = tuple(args.tls) if args.tls else bool(args.tls_self_signed)
    server = XapiTestServer(
        specs,
        tls=tls,
        host=args.host,
        port=args.port,
        session_ttl=args.session_ttl,
        testing_api=not args.no_testing_api,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for pool in server.pools:
        for name, size in args.image:
            server.add_image(name, size, pool=pool)
    server.start()
    try:
        print("READY " + " ".join(f"{n}={u}" for n, u in server.urls.items()), flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
