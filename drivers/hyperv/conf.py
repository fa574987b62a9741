"""Options of the Hyper-V driver (group ``[hyperv]``).

One worker may serve several Hyper-V hosts: compute host ``h`` is reached at
the WinRM endpoint ``host_urls[h]``, with the one account configured here::

    [hyperv]
    host_urls = hv01:http://hv01.example.com:5985/wsman,hv02:https://hv02.example.com:5986/wsman
    username = EXAMPLE\\computed
    password = ...
    transport = ntlm
"""

from __future__ import annotations

from urllib.parse import urlsplit

from oslo_config import cfg

__all__ = ["GROUP", "list_opts", "register_opts", "url_for"]

GROUP = "hyperv"


def _group() -> cfg.OptGroup:
    # A new object for every ConfigOpts: oslo.config copies a registered group
    # shallowly, so one shared OptGroup would share overrides between them.
    return cfg.OptGroup(
        GROUP,
        title="Hyper-V driver options",
        help="How the Hyper-V driver reaches its hosts over WinRM and builds their VMs.",
    )


hyperv_opts = [
    cfg.DictOpt(
        "host_urls",
        default={},
        help="WinRM endpoint per compute host, as host:url pairs separated by commas, for "
        "example 'hv01:http://hv01.example.com:5985/wsman,hv02:https://hv02:5986/wsman'. "
        "Only the first ':' of a pair separates the host from the URL. A compute host "
        "missing here cannot be served. URLs must not carry credentials.",
    ),
    cfg.StrOpt(
        "username",
        default="Administrator",
        help="Account the driver logs on to every host with: 'user', 'DOMAIN\\user' or "
        "'user@domain'. It must be allowed to run the Hyper-V cmdlets.",
    ),
    cfg.StrOpt(
        "password",
        secret=True,
        default="",
        help="Password of the account. Never logged nor included in errors.",
    ),
    cfg.StrOpt(
        "transport",
        default="ntlm",
        choices=[
            ("ntlm", "NTLM; over http the WinRM messages are sealed with the NTLM session key"),
            ("basic", "Basic authentication; only allowed with https URLs"),
        ],
        help="WinRM authentication.",
    ),
    cfg.BoolOpt(
        "server_cert_validation",
        default=True,
        help="Whether to validate the host's TLS certificate for https URLs. Turning it off "
        "exposes the credentials to anyone who can intercept the connection.",
    ),
    cfg.StrOpt(
        "ca_file",
        help="PEM file of the certificate authorities that sign the hosts' WinRM "
        "certificates. Unset: the system's (or REQUESTS_CA_BUNDLE's) trust store.",
    ),
    cfg.IntOpt(
        "operation_timeout",
        default=20,
        min=1,
        help="Seconds the host may take over one WS-Management operation (WinRM's "
        "OperationTimeout). Must be less than read_timeout.",
    ),
    cfg.IntOpt(
        "read_timeout",
        default=30,
        min=2,
        help="Seconds to wait for the host to accept a connection or answer one HTTP "
        "request; bounds how long an unreachable host takes to fail.",
    ),
    cfg.IntOpt(
        "max_sessions",
        default=4,
        min=1,
        help="Scripts the worker runs on one host at once, each in its own WinRM shell "
        "and HTTP connection; keep it well under the host's MaxShellsPerUser (30 by "
        "default). Operations beyond it wait.",
    ),
    cfg.IntOpt(
        "generation",
        default=2,
        choices=[(1, "BIOS firmware"), (2, "UEFI firmware")],
        help="Hyper-V generation of the VMs the driver creates.",
    ),
    cfg.FloatOpt(
        "instance_poll_interval",
        default=5.0,
        min=0.0,
        help="Seconds between two looks at every VM of a host (one Get-VM) to tell the "
        "worker at once of instances whose power state changed or that vanished without "
        "an operation: Hyper-V sends no events over WinRM. Much shorter than "
        "[notifications] instance_sync_interval, which looks at every instance in depth. "
        "0 turns the poll off.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(hyperv_opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(_group(), hyperv_opts)]


def url_for(conf: cfg.ConfigOpts, host: str) -> str:
    """The WinRM URL of compute host ``host``.

    :raises ValueError: if the host has none, or it is not an http(s) URL without credentials.
    """
    url: str | None = conf.hyperv.host_urls.get(host)
    if not url:
        raise ValueError(f"no WinRM URL for host {host!r} in [hyperv] host_urls")
    # Checked before parsing: a password holding '/' or '#' hides from urlsplit.
    if "@" in url:
        raise ValueError(
            f"[hyperv] host_urls: the URL of {host!r} must not carry credentials; "
            "use [hyperv] username and password"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"[hyperv] host_urls: {host!r} needs an http:// or https:// URL")
    return url
