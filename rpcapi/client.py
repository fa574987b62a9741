"""Client side of the compute RPC contract."""

from __future__ import annotations

import contextlib
import datetime
import threading
import typing
from collections.abc import Iterator
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_context import context as oslo_context

from computed import exception, rpc, version
from computed.conf import client as client_conf
from computed.conf import conformance as conformance_conf
from computed.conf import registry as registry_conf
from computed.conf import upgrade_levels as upgrade_conf
from computed.conf import worker as worker_conf
from computed.objects import (
    HostCapabilities,
    HostResources,
    InstanceInfo,
    InstanceSpec,
    PingResult,
)
from computed.registry import Registry
from computed.registry.api import utcnow
from rpcapi import _pins
from rpcapi._counters import CallCounters
from rpcapi._resolver import HostResolver

__all__ = ["ComputeAPI"]


class ComputeAPI:
    """Client side of the compute RPC API.

    Every method takes a request context (an ``oslo_context`` RequestContext,
    or None for a new one) and the compute host to act on. Lifecycle methods
    are calls by default and return the instance's new state; with
    ``cast=True`` they return at once, and the worker publishes the outcome as
    ``instance.<operation>.start/end/error`` notifications carrying the
    context's ``request_id``.

    Errors raised by the worker arrive as their :mod:`computed.exception`
    types. A host that no live worker serves raises HostUnavailable at once;
    one whose worker is draining or restarting waits for its next worker,
    up to ``[client] handover_timeout`` seconds, then raises HostUnavailable.

    Messages go out on ``[DEFAULT] transport_url``, or, for a driver type
    listed in ``[client] driver_transport_url``, on that driver type's own
    transport (one broker vhost and user per driver type): the client routes
    each host by the driver of the worker that serves it.

    Each message goes out at the newest version the host can take: the
    oldest of this client's version, the ``[upgrade_levels] compute`` pin
    and the version its workers report in the registry. Objects are
    backported to that version; an operation the host is too old for raises
    UnsupportedVersion at once, without sending (``can_send_*()`` ask first).

    API version history:

    * 1.0 - Initial version: spawn, destroy, reboot, power_on, power_off,
      pause, unpause, suspend, resume, get_info, list_instances,
      get_host_resources, get_capabilities, ping.
    * 1.1 - Added get_console_output; InstanceSpec 1.1 (description).
    """

    VERSION_ALIASES = version.VERSION_ALIASES

    def __init__(
        self,
        conf: cfg.ConfigOpts | None = None,
        registry: Registry | None = None,
        transport: messaging.Transport | None = None,
        required_tier: str | None = None,
    ) -> None:
        """
        :param required_tier: overrides ``[conformance] required_tier``; the
            conformance suite passes ``untested`` to reach drivers not yet rated.
        """
        self._conf = conf = conf or cfg.CONF
        for module in (client_conf, registry_conf, worker_conf, conformance_conf, upgrade_conf):
            module.register_opts(conf)
        _pins.parse_pin(conf.upgrade_levels.compute)  # a bad pin is a ConfigError now
        self._registry = registry or Registry(conf.registry.connection)
        self._resolver = HostResolver(
            self._registry,
            conf.client.cache_ttl,
            conf.registry.down_time,
            required_tier or conf.conformance.required_tier,
            conf.client.handover_timeout,
        )
        #: The transport of driver types without a URL of their own.
        self._transport = transport
        self._driver_urls = client_conf.driver_transport_urls(conf)
        #: One RPC client per transport URL (None: the default transport).
        self._clients: dict[str | None, messaging.RPCClient] = {}
        #: The transports of driver types with a URL of their own.
        self._transports: list[messaging.Transport] = []
        self._prepared: dict[tuple[str | None, str, str, bool], Any] = {}
        self._caps: dict[str, tuple[tuple[str, int], datetime.datetime, _pins.Cap]] = {}
        self._lock = threading.Lock()
        self._counters = CallCounters(self._registry, conf.upgrade_levels.counters_interval)

    # Instance lifecycle ------------------------------------------------------

    def spawn(
        self, ctxt: Any, host: str, instance: InstanceSpec, *, cast: bool = False
    ) -> InstanceInfo | None:
        """Build and start ``instance``; an existing UUID is returned as it is."""
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "spawn", cast, instance=instance)
        )

    def destroy(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> None:
        """Delete the instance and its disks; a missing instance is not an error."""
        self._lifecycle(ctxt, host, "destroy", cast, uuid=uuid)

    def reboot(
        self, ctxt: Any, host: str, uuid: str, reboot_type: str = "soft", *, cast: bool = False
    ) -> InstanceInfo | None:
        """Reboot, ``soft`` (through the guest) or ``hard`` (reset)."""
        return typing.cast(
            "InstanceInfo | None",
            self._lifecycle(ctxt, host, "reboot", cast, uuid=uuid, reboot_type=reboot_type),
        )

    def power_on(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "power_on", cast, uuid=uuid)
        )

    def power_off(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "power_off", cast, uuid=uuid)
        )

    def pause(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "pause", cast, uuid=uuid)
        )

    def unpause(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "unpause", cast, uuid=uuid)
        )

    def suspend(
        self, ctxt: Any, host: str, uuid: str, *, cast: bool = False
    ) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "suspend", cast, uuid=uuid)
        )

    def resume(self, ctxt: Any, host: str, uuid: str, *, cast: bool = False) -> InstanceInfo | None:
        return typing.cast(
            "InstanceInfo | None", self._lifecycle(ctxt, host, "resume", cast, uuid=uuid)
        )

    # Queries ------------------------------------------------------------------

    def get_console_output(
        self, ctxt: Any, host: str, uuid: str, tail_lines: int | None = None
    ) -> str:
        """The instance's console log, its last ``tail_lines`` lines if given (1.1).

        :raises computed.exception.UnsupportedVersion: at once, if the host
            speaks only 1.0 (see :meth:`can_send_console_output`).
        """
        return str(self._call(ctxt, host, "get_console_output", uuid=uuid, tail_lines=tail_lines))

    def get_info(self, ctxt: Any, host: str, uuid: str) -> InstanceInfo:
        return typing.cast(InstanceInfo, self._call(ctxt, host, "get_info", uuid=uuid))

    def list_instances(self, ctxt: Any, host: str) -> list[InstanceInfo]:
        return list(self._call(ctxt, host, "list_instances").objects)

    def get_host_resources(self, ctxt: Any, host: str) -> HostResources:
        return typing.cast(HostResources, self._call(ctxt, host, "get_host_resources"))

    def get_capabilities(self, ctxt: Any, host: str) -> HostCapabilities:
        return typing.cast(HostCapabilities, self._call(ctxt, host, "get_capabilities"))

    def ping(self, ctxt: Any, host: str) -> PingResult:
        return typing.cast(PingResult, self._call(ctxt, host, "ping"))

    # Versions -----------------------------------------------------------------

    def version_cap(self, host: str) -> str:
        """The newest RPC version this client would send to ``host`` now.

        Like a message, it waits while the host changes hands.

        :raises computed.exception.HostUnavailable: if no live worker serves it.
        """
        self._resolver.resolve(host)
        return self._cap(host).version

    def can_send_version(self, host: str, rpc_version: str) -> bool:
        """Whether a message at ``rpc_version`` may be sent to ``host`` now."""
        return not version.newer(rpc_version, self.version_cap(host))

    def can_send_console_output(self, host: str) -> bool:
        return self.can_send_version(host, version.METHOD_VERSIONS["get_console_output"])

    def can_send_instance_description(self, host: str) -> bool:
        """Whether a spawn keeps ``InstanceSpec.description`` (else it is dropped)."""
        return self.can_send_version(host, "1.1")

    def call_counts(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """``{(host, version): (sent, backported, refused)}`` of this client so far.

        The same counts reach the registry every ``[upgrade_levels]
        counters_interval`` seconds, where ``computedctl upgrade-status`` shows them.
        """
        return self._counters.snapshot()

    # --------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close the broker connections and the registry engine."""
        self._counters.flush(force=True)
        for transport in [self._transport, *self._transports]:
            if transport is not None:
                transport.cleanup()
        self._registry.close()

    def _lifecycle(self, ctxt: Any, host: str, method: str, cast: bool, **kwargs: Any) -> Any:
        if cast:
            ctxt = _context(ctxt)
            rpc_version, kwargs = self._fit(host, method, kwargs)
            cctxt = self._prepare(host, rpc_version, long=False)
            with self._errors(host, method, self._conf.client.call_timeout, rpc_version):
                cctxt.cast(ctxt, method, **kwargs)
            return None
        return self._call(ctxt, host, method, long=True, **kwargs)

    def _call(self, ctxt: Any, host: str, method: str, long: bool = False, **kwargs: Any) -> Any:
        ctxt = _context(ctxt)
        rpc_version, kwargs = self._fit(host, method, kwargs)
        cctxt = self._prepare(host, rpc_version, long=long)
        timeout = self._conf.client.long_call_timeout if long else self._conf.client.call_timeout
        with self._errors(host, method, timeout, rpc_version):
            return cctxt.call(ctxt, method, **kwargs)

    def _cap(self, host: str) -> _pins.Cap:
        # The cap depends only on the pin and the registry copy: reuse it until the
        # copy is re-read or a worker in it may change liveness (heartbeat + down time).
        raw_pin = self._conf.upgrade_levels.compute
        key = (raw_pin, self._resolver.generation)
        cached = self._caps.get(host)
        if cached is not None and cached[0] == key and utcnow() < cached[1]:
            return cached[2]
        pin = _pins.parse_pin(raw_pin)
        cap = _pins.host_cap(pin, self._resolver.consumers(host), self._resolver.live_workers())
        self._caps[host] = (key, self._resolver.stable_until(), cap)
        return cap

    def _fit(self, host: str, method: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The version to send ``method`` to ``host`` at, and its arguments fitted to it.

        :raises computed.exception.HostUnavailable: if no live worker serves the host.
        :raises computed.exception.UnsupportedVersion: if the host is too old for it.
        """
        self._resolver.resolve(host)
        cap = self._cap(host)
        try:
            rpc_version, fitted, backported = _pins.fit_message(host, method, cap, kwargs)
        except exception.UnsupportedVersion:
            self._counters.count(host, cap.version, refused=True)
            raise
        self._counters.count(host, rpc_version, backported=backported)
        return rpc_version, fitted

    def _prepare(self, host: str, rpc_version: str, long: bool) -> Any:
        """The call context for ``host`` at ``rpc_version``, on its driver type's transport."""
        url = None
        if self._driver_urls:  # isolated driver types: the transport of the host's driver
            url = self._driver_urls.get(self._resolver.resolve(host).driver)
        key = (url, host, rpc_version, long)
        prepared = self._prepared.get(key)
        if prepared is None:
            client_opts = self._conf.client
            options: dict[str, Any] = {"server": host, "version": rpc_version}
            if long:
                options["timeout"] = client_opts.long_call_timeout
                options["call_monitor_timeout"] = client_opts.call_timeout
            else:
                options["timeout"] = client_opts.call_timeout
            prepared = self._prepared[key] = self._rpc_client(url).prepare(**options)
        return prepared

    def _rpc_client(self, url: str | None = None) -> messaging.RPCClient:
        """The RPC client on transport ``url``, or on the default transport for None."""
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                conf = self._conf
                if url is not None:
                    transport = rpc.get_transport(conf, url=url)
                    self._transports.append(transport)
                    rpc.check_broker(conf, url, conf.broker_connect_timeout)
                elif self._transport is None:
                    transport = self._transport = rpc.get_transport(conf)
                    rpc.check_broker(conf, conf.transport_url, conf.broker_connect_timeout)
                else:
                    transport = self._transport
                client = self._clients[url] = messaging.get_rpc_client(
                    transport,
                    messaging.Target(topic=rpc.TOPIC, version=version.RPC_API_VERSION),
                    serializer=rpc.RequestContextSerializer(),
                )
            return client

    @contextlib.contextmanager
    def _errors(
        self, host: str, operation: str, timeout: float, rpc_version: str
    ) -> Iterator[None]:
        """Turn oslo.messaging's failures into the project's exceptions."""
        try:
            yield
        except exception.ComputedError as exc:
            raise _local_copy(exc) from None
        except messaging.MessagingTimeout:
            raise exception.HostTimeout(host=host, operation=operation, timeout=timeout) from None
        except messaging.RemoteError as exc:
            if exc.exc_type in ("UnsupportedVersion", "NoSuchMethod"):
                raise exception.UnsupportedVersion(
                    host=host,
                    operation=operation,
                    version=rpc_version,
                    reason=exc.value,
                ) from None
            raise exception.RPCError(
                host=host, operation=operation, reason=f"{exc.exc_type}: {exc.value}"
            ) from None
        except messaging.MessagingException as exc:
            raise exception.RPCError(
                host=host, operation=operation, reason=f"{type(exc).__name__}: {exc}"
            ) from exc


def _context(ctxt: Any) -> oslo_context.RequestContext:
    return ctxt if ctxt is not None else oslo_context.RequestContext()


def _local_copy(exc: exception.ComputedError) -> exception.ComputedError:
    """The exception as its original class, without the remote traceback in its text.

    oslo.messaging rebuilds a remote exception as a dynamic subclass whose
    message carries the worker's traceback; callers want the plain class and
    message, as if the error had been raised locally.
    """
    cls = type(exc)
    if not cls.__name__.endswith("_Remote"):
        return exc
    original = cls.__mro__[1]
    return original(*exc.args, **exc.kwargs)  # type: ignore[no-any-return]
