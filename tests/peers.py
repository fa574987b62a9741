"""Protocol peers for each in-tree driver, shared by the demo and the tests.

Each function starts what its driver talks to (nothing for fake, a private
libvirtd, the xapi test server, the WinRM test server) inside an ExitStack
that stops it again, and returns the compute hosts to serve with the worker
options that reach them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "Unavailable", "Peer"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_USER, DEMO_PASSWORD = "demo", "demo-secret"


def announce(text: str) -> None:
    print(f"\n==> {text}", flush=True)


class Unavailable(Exception):
    """A driver's peer cannot run on this machine."""


Peer = Callable[[ExitStack, str], tuple[list[str], dict[str, Any]]]


def _fake_peer(stack: ExitStack, workdir: str) -> tuple[list[str], dict[str, Any]]:
    """Nothing to start: the fake hypervisor is the workers' ``[fake] state_dir``
    (``<workdir>/fake-state``), which ``python -m drivers.fake`` changes behind
    their backs; they look at it every second."""
    state_dir = f"{workdir}/fake-state"
    command = f"{shlex.quote(sys.executable)} -m drivers.fake --state-dir {shlex.quote(state_dir)}"
    return ["fake-1", "fake-2"], {
        "conformance": {"hypervisor_command": command},
        "notifications": {"instance_sync_interval": 1},
    }


def _libvirt_peer(stack: ExitStack, workdir: str) -> tuple[list[str], dict[str, Any]]:
    """Two private libvirtds (test driver) reached over libvirt's remote protocol,
    one per host (``kvm-1``, ``kvm-2``), each with a host UUID of its own.

    Each serves its built-in node (``test+unix:///default``), which every
    connection to the daemon shares, so that ``python -m computed.testing.libvirtd``
    can change the worker's domains behind its back; kept by a connection of
    our own, since the node resets when its last connection closes. The test
    driver cannot move an instance between daemons (no volume streams, no
    migration): the workers claim evacuation only, and the suite's cold and
    live migration checks are skipped as unsupported.
    """
    try:
        import uuid

        import libvirt

        from computed.testing.libvirtd import Libvirtd
    except ImportError as exc:
        raise Unavailable(f"libvirt-python is not installed ({exc})") from None
    hosts = ["kvm-1", "kvm-2"]
    announce("Starting two private libvirtds (test driver, reached through test+unix://)")
    uris: dict[str, str] = {}
    # The node's pool holds the image root disks are copied from and a volume
    # that file volumes name; its network "default" takes the interfaces.
    pool, image, volume, network = "default-pool", "cirros", "conformance-volume", "default"
    for host in hosts:
        try:
            daemon = stack.enter_context(Libvirtd(host_uuid=str(uuid.uuid4())))
        except RuntimeError as exc:
            raise Unavailable(str(exc).splitlines()[0]) from None
        uris[host] = daemon.uri_for()
        keeper = libvirt.open(uris[host])
        stack.callback(keeper.close)
        for name, size in ((image, 16 << 20), (volume, 1 << 30)):
            keeper.storagePoolLookupByName(pool).createXML(
                f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity></volume>", 0
            )
        # The node's built-in domain, "test", is given 8 GiB of the node's 3 GiB:
        # a host over-committed before any worker came, where no spawn could be
        # claimed. The hosts under test start empty.
        builtin = keeper.lookupByName("test")
        builtin.destroy()
        builtin.undefine()
    targets = " ".join(f"--uri {shlex.quote(f'{host}={uri}')}" for host, uri in uris.items())
    command = f"{shlex.quote(sys.executable)} -m computed.testing.libvirtd {targets}"
    return hosts, {
        "libvirt": {
            "host_uris": uris,
            "storage_pool": pool,
            "iscsi_initiators": {host: f"iqn.2010-10.org.computed:{host}" for host in hosts},
            # The test driver runs no guest: ports the driver picks, not qemu's.
            "serial_port_range": "10000:10999",
            "graphics_port_range": "5900:5999",
        },
        "conformance": {
            "network": network,
            "image": image,
            "volume_path": f"/{pool}/{volume}",
            "hypervisor_command": command,
        },
        # Events only: the periodic look cannot publish what they miss.
        "notifications": {"instance_sync_interval": 0},
    }


def _xenapi_peer(stack: ExitStack, workdir: str) -> tuple[list[str], dict[str, Any]]:
    """The xapi test server (real XML-RPC) standing in for a XenServer pool of two
    hosts on shared storage, each a compute host (``xen-1``, ``xen-2``).

    The pool has imported the image the conformance suite makes root disks
    from, and its storage array makes the suite's volumes: the provisioning
    script (tests/xapiserver/provision.py, standard library only, so it runs
    from any directory) exports each as an iSCSI LUN and prints its
    connection info, as a storage service would.
    """
    import shlex

    image, network = "cirros", "Pool-wide network associated with eth0"
    announce(
        f"Starting the xapi test server (pool 'pool1' with hosts 'xs1' and 'xs2', image {image!r})"
    )
    line = _start_server(
        stack,
        [
            "-m",
            "tests.xapiserver",
            "--port",
            "0",
            "--pool",
            f"pool1:{DEMO_USER}:{DEMO_PASSWORD}:xs1,xs2",
            "--image",
            f"{image}:112",
        ],
    )
    if not line.startswith("READY "):
        raise Unavailable(f"the xapi test server did not start: {line!r}")
    url = dict(item.split("=", 1) for item in line.split()[1:])["pool1"]
    script = ROOT / "tests" / "xapiserver" / "provision.py"
    provision = shlex.join([sys.executable, str(script), "--url", url])
    hypervisor = shlex.join(
        [sys.executable, str(script.with_name("hypervisor.py")), "--url", url]
        + ["--user", DEMO_USER, "--password", DEMO_PASSWORD]
    )
    return ["xen-1", "xen-2"], {
        "xenapi": {
            "pool_urls": {"pool1": url},
            "hosts": {"xen-1": "pool1/xs1", "xen-2": "pool1/xs2"},
            "username": DEMO_USER,
            "password": DEMO_PASSWORD,
        },
        "conformance": {
            "network": network,
            "image": image,
            "volume_command": provision,
            "volume_extend_command": f"{provision} --extend",
            "hypervisor_command": hypervisor,
        },
    }


def _hyperv_peer(stack: ExitStack, workdir: str) -> tuple[list[str], dict[str, Any]]:
    """The WS-Management test server (NTLM, encrypted) standing in for two Hyper-V hosts.

    Hosts ``hv-1`` and ``hv-2``, each on its own port, reach each other by
    name for migrations (``Move-VM``). Each has a virtual switch ``public``
    and the base image ``cirros`` where the driver looks for images
    (``_base`` under its VirtualHardDiskPath); the suite's volumes are VHDX
    files made on ``hv-1`` over WinRM, as a storage administrator would
    (tests/winrmserver/provision.py), and its instances are stopped or
    removed behind the worker's back over WinRM too
    (tests/winrmserver/outofband.py).
    """
    import shlex

    hosts = ["hv-1", "hv-2"]
    announce(
        "Starting the WinRM test server (Hyper-V hosts 'hv-1' and 'hv-2', NTLM with message "
        "encryption)"
    )
    image_dir = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks\\_base"
    line = _start_server(
        stack,
        [
            "-m",
            "tests.winrmserver",
            "--user",
            DEMO_USER,
            "--password",
            DEMO_PASSWORD,
            *(arg for host in hosts for arg in ("--host", host)),
            "--switch",
            "public",
            "--vhd",
            f"{image_dir}\\cirros.vhdx",
        ],
    )
    if not line.startswith("http"):
        raise Unavailable(f"the WinRM test server did not start: {line!r}")
    urls = dict(item.split("=", 1) for item in line.split()[1:])
    url = urls[hosts[0]]
    # The suite runs it from wherever it was started: the project is on its path.
    provision = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.winrmserver.provision"]
    out_of_band = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.winrmserver.outofband"]
    credentials = ["--url", url, "--user", DEMO_USER, "--password", DEMO_PASSWORD]
    return hosts, {
        "hyperv": {
            "host_urls": {host: urls[host] for host in hosts},
            "username": DEMO_USER,
            "password": DEMO_PASSWORD,
        },
        "conformance": {
            "network": "public",
            "image": "cirros",
            "volume_command": shlex.join([*provision, *credentials]),
            "hypervisor_command": shlex.join([*out_of_band, *credentials]),
        },
    }


#: Driver type -> what starts its hypervisor (or test peer) and names its hosts.
PEERS = {
    "fake": _fake_peer,
    "libvirt": _libvirt_peer,
    "xenapi": _xenapi_peer,
    "hyperv": _hyperv_peer,
}


def _start_server(stack: ExitStack, args: list[str]) -> str:
    """Start a test server as a process of its own; return the line it prints when ready."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    stack.callback(_end, process)
    assert process.stdout is not None
    return process.stdout.readline().strip()


def _end(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
