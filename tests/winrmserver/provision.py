"""``python -m tests.winrmserver.provision``: make a volume for Hyper-V hosts, as a storage service would.

Run as ``[conformance] volume_command`` with two more arguments, the volume id
and its size in GiB. Over WinRM (pywinrm, NTLM) it creates a dynamic VHDX in
the volumes directory of a Hyper-V host -- what a storage administrator does
on the SMB share the hosts attach volumes from -- and prints the volume's
connection info as JSON::

    {"driver_volume_type": "file", "data": {"device_path": "\\\\storage\\volumes\\<id>.vhdx"}}

It exits non-zero, with PowerShell's error on stderr, if the host refuses.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid

import winrm

__all__ = ["main", "new_vhd_script"]

#: Where the volumes live: an SMB share every Hyper-V host can open.
DEFAULT_DIRECTORY = "\\\\storage\\volumes"

# PowerShell takes each of these as a single quote; doubled, as a literal one.
_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def _quote(value: str) -> str:
    return "'" + _QUOTES.sub(lambda m: m.group(0) * 2, value) + "'"


def new_vhd_script(path: str, size_gb: int) -> str:
    """The PowerShell that makes a dynamic VHDX of ``size_gb`` GiB at ``path``."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"New-VHD -Path {_quote(path)} -SizeBytes {size_gb}GB -Dynamic"
        " | Select-Object -Property Path | ConvertTo-Json -Compress"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.winrmserver.provision", description=__doc__
    )
    parser.add_argument("--url", required=True, help="WinRM URL of a Hyper-V host")
    parser.add_argument("--user", required=True, help="account that may run New-VHD")
    parser.add_argument("--password", required=True, help="the account's password")
    parser.add_argument(
        "--directory",
        default=DEFAULT_DIRECTORY,
        help=f"Windows or UNC directory of the volumes (default {DEFAULT_DIRECTORY})",
    )
    parser.add_argument("volume_id", type=uuid.UUID, help="the volume's id (a UUID)")
    parser.add_argument("size_gb", type=int, help="the volume's size in GiB (at least 1)")
    args = parser.parse_args(argv)
    if args.size_gb < 1:
        parser.error("size_gb must be at least 1")
    path = f"{args.directory.rstrip(chr(92))}\\{args.volume_id}.vhdx"
    session = winrm.Session(args.url, auth=(args.user, args.password), transport="ntlm")
    done = session.run_ps(new_vhd_script(path, args.size_gb))
    if done.status_code != 0:
        print(done.std_err.decode("utf-8", errors="replace").rstrip(), file=sys.stderr)
        return 1
    made = json.loads(done.std_out.decode("utf-8"))
    print(json.dumps({"driver_volume_type": "file", "data": {"device_path": made["Path"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
