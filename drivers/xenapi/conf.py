"""Options of the XenAPI driver (group ``[xenapi]``).

One worker may serve hosts of several pools. Each pool is named once with
its URL and credentials; each compute host names its pool and, optionally,
the xapi host (by ``name_label``) whose instances it owns::

    [xenapi]
    pool_urls = pool1:https://xs1.example.com/,pool2:https://10.0.0.5/
    hosts = compute1:pool1/xs1-a,compute2:pool1/xs1-b,compute3:pool2
    username = root
    password = s3cret                # every pool's, unless pool_passwords says otherwise
    pool_usernames = pool2:admin
    pool_passwords = pool2:other

A compute host that names no xapi host is served by its pool's master.
The worker keeps one logged-in session per pool, shared by its hosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from oslo_config import cfg

from computed import exception
from drivers.xenapi import constants

__all__ = [
    "GROUP",
    "PoolConfig",
    "Target",
    "display_url",
    "list_opts",
    "pool_config",
    "register_opts",
    "target_for",
]

GROUP = "xenapi"


def _group() -> cfg.OptGroup:
    # A new object for every ConfigOpts: oslo.config copies a registered group
    # shallowly, so one shared OptGroup would share overrides between them.
    return cfg.OptGroup(
        GROUP,
        title="XenAPI driver options",
        help="Which XenServer / XCP-ng pools the XenAPI driver logs in to, and how it "
        "builds instances there.",
    )


xenapi_opts = [
    cfg.DictOpt(
        "pool_urls",
        default={},
        help="URL of each pool's master, as name:url pairs separated by commas, for "
        "example 'pool1:https://xs1.example.com/,pool2:http://10.0.0.5/'. Only the "
        "first ':' of a pair separates the name from the URL. The URL must not "
        "carry credentials; use username/password.",
    ),
    cfg.DictOpt(
        "hosts",
        default={},
        help="The pool serving each compute host, as compute-host:pool[/xapi-host] "
        "pairs separated by commas, for example 'c1:pool1/xs1-a,c2:pool1/xs1-b,c3:pool2'. "
        "xapi-host is the name_label of the pool member whose instances the compute "
        "host owns; without it, the pool master.",
    ),
    cfg.StrOpt(
        "username",
        default="root",
        help="User name the driver logs in to every pool with, unless pool_usernames "
        "names another for that pool.",
    ),
    cfg.StrOpt(
        "password",
        default="",
        secret=True,
        help="Password of username on every pool, unless pool_passwords gives another "
        "for that pool. Never logged.",
    ),
    cfg.DictOpt(
        "pool_usernames",
        default={},
        help="User name per pool, as pool:user pairs separated by commas; overrides username.",
    ),
    cfg.DictOpt(
        "pool_passwords",
        default={},
        secret=True,
        help="Password per pool, as pool:password pairs separated by commas; overrides "
        "password. A password may not contain ',' here. Never logged.",
    ),
    cfg.StrOpt(
        "template",
        default="Other install media",
        help="name_label of the template every instance is cloned from. Its "
        "other_config:disks provisions the instance's disks; a non-zero disk_gb "
        "sets the size of its bootable (else first) disk.",
    ),
    cfg.BoolOpt(
        "ignore_ssl",
        default=False,
        help="Accept any TLS certificate from https pool URLs (self-signed pools). "
        "Insecure: prefer ca_file.",
    ),
    cfg.StrOpt(
        "ca_file",
        help="PEM file of the certificate authorities (or self-signed certificates) to "
        "trust for https pool URLs. Unset: the system's trust store.",
    ),
    cfg.FloatOpt(
        "connect_timeout",
        default=10.0,
        min=0.1,
        help="Seconds to wait for a TCP connection (and TLS handshake) to a pool; an "
        "unreachable pool fails the operation after this long.",
    ),
    cfg.FloatOpt(
        "call_timeout",
        default=60.0,
        min=0.1,
        help="Seconds to wait for the reply to one XML-RPC request.",
    ),
    cfg.FloatOpt(
        "task_timeout",
        default=600.0,
        min=0.1,
        help="Seconds a long VM operation (clone, provision, start, shutdown, reboot, "
        "suspend, resume, destroy) may take as an xapi task before the driver "
        "cancels it and fails the operation.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(xenapi_opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(_group(), xenapi_opts)]


@dataclass(frozen=True)
class PoolConfig:
    """How to reach one pool. ``repr`` leaves the password out."""

    name: str
    url: str
    username: str
    password: str
    ignore_ssl: bool
    ca_file: str | None
    connect_timeout: float
    call_timeout: float
    task_timeout: float

    def __repr__(self) -> str:
        return f"PoolConfig(name={self.name!r}, url={self.url!r}, username={self.username!r})"


@dataclass(frozen=True)
class Target:
    """Where a compute host's instances live: a pool, and one host of it."""

    host: str
    pool: str
    #: name_label of the xapi host; None for the pool master.
    xapi_host: str | None


def _config_error(host: str, reason: str) -> exception.DriverError:
    return exception.DriverError(driver=constants.DRIVER, host=host, reason=reason)


def target_for(conf: cfg.ConfigOpts, host: str) -> Target:
    """The pool (and xapi host) serving compute host ``host``.

    :raises computed.exception.DriverError: if ``[xenapi] hosts`` does not name it.
    """
    entry = conf.xenapi.hosts.get(host)
    if not entry:
        raise _config_error(host, "no pool for this host in [xenapi] hosts")
    pool, _, xapi_host = entry.partition("/")
    return Target(host=host, pool=pool.strip(), xapi_host=xapi_host.strip() or None)


def pool_config(conf: cfg.ConfigOpts, host: str, pool: str) -> PoolConfig:
    """The URL, credentials and timeouts of ``pool`` (``host`` names who asked).

    :raises computed.exception.DriverError: if ``[xenapi] pool_urls`` lacks the pool.
    """
    group = conf.xenapi
    url = group.pool_urls.get(pool)
    if not url:
        raise _config_error(host, f"pool {pool!r} has no URL in [xenapi] pool_urls")
    if urlsplit(url).password is not None:
        raise _config_error(
            host,
            f"the URL of pool {pool!r} carries a password; "
            "set [xenapi] password or pool_passwords instead",
        )
    return PoolConfig(
        name=pool,
        url=url,
        username=group.pool_usernames.get(pool) or group.username,
        password=group.pool_passwords.get(pool) or group.password or "",
        ignore_ssl=group.ignore_ssl,
        ca_file=group.ca_file,
        connect_timeout=group.connect_timeout,
        call_timeout=group.call_timeout,
        task_timeout=group.task_timeout,
    )


def display_url(url: str) -> str:
    """``url`` without any user information, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
