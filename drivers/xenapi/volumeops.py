"""Volumes: the SR and VDI of a volume's connection info, as nova's XenAPI driver made them.

A volume reaches the pool as an SR of its own, introduced from the
connection info (``SR.introduce``, then a ``PBD`` for the compute host's
xapi host, ``PBD.plug``, ``SR.scan``), the volume being a VDI of that SR:

==========  ==================================================================
``iscsi``   ``target_portal`` (``host:port``), ``target_iqn``, ``target_lun``,
            CHAP from ``auth_method`` / ``auth_username`` / ``auth_password``;
            SR type ``iscsi`` (a LUN per VDI), the VDI found by its LUN.
``nfs``     ``export`` (``server:/path``) or ``server`` and ``serverpath``,
            and ``vdi_uuid``: an NFS SR holds VDIs as files named by their
            uuid, so the storage service must say which one is the volume.
==========  ==================================================================

The SR's uuid is derived from the target (or given as ``sr_uuid``), so
volumes of one target share one SR. Any other transport is
UnsupportedOperation. Once no VBD uses a VDI of the SR, the SR is forgotten
(its PBDs unplugged, ``SR.forget``), as nova's ``purge_sr`` did.
"""

from __future__ import annotations

import logging
import threading
import uuid as uuidlib
from typing import Any

import XenAPI

from computed import exception
from computed.objects import VolumeConnection, VolumeConnector
from drivers.xenapi import constants, errors
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession

__all__ = ["SUPPORTED_TYPES", "VolumeOps"]

LOG = logging.getLogger(__name__)

SUPPORTED_TYPES = ("iscsi", "nfs")
#: The namespace of the uuids derived for volume SRs (uuid5 of the target).
_SR_NAMESPACE = uuidlib.UUID("8f1d2a1e-5b7c-4d6e-9f3a-0c2b4e6d8a10")


class VolumeOps:
    """Connects the pool to volumes, and forgets their SRs once unused."""

    def __init__(self) -> None:
        # Two volumes of one target share an SR: introduce and forget it one at a time.
        self._lock = threading.Lock()

    def connect(
        self, session: PoolSession, target: Target, host_ref: str, connection: VolumeConnection
    ) -> str:
        """The VDI of the volume, its SR introduced and plugged on ``host_ref`` if need be."""
        sr_uuid, sr_type, config, locate = _parse(target, connection)
        with self._lock:
            sr = self._find_sr(session, sr_uuid)
            fresh = sr is None
            if sr is None:
                label = f"computed volumes on {config.get('targetIQN') or config['serverpath']}"
                sr = str(session.call("SR.introduce", sr_uuid, label, "", sr_type, "", True, {}))
            try:
                self._plug(session, sr, host_ref, config)
                session.run_task("SR.scan", sr)
                return str(locate(session, sr))
            except _VolumeMissing as missing:
                if fresh:
                    self._forget(session, sr)
                raise exception.DriverError(
                    driver=constants.DRIVER,
                    host=target.host,
                    reason=f"the volume's SR has no {missing} after a scan",
                ) from missing
            except BaseException:
                if fresh:
                    self._forget(session, sr)
                raise

    def purge(self, session: PoolSession, sr: str) -> None:
        """Forget ``sr`` if no VBD uses any of its VDIs any more."""
        with self._lock:
            try:
                vdis = session.call("SR.get_VDIs", sr)
                if any(session.call("VDI.get_VBDs", vdi) for vdi in vdis):
                    return
                self._forget(session, sr)
            except XenAPI.Failure as exc:
                LOG.warning("Could not forget volume SR %s: %s", sr, exc)

    @staticmethod
    def connector(session: PoolSession, target: Target, host_ref: str) -> VolumeConnector:
        """The xapi host's initiator name and address, for the compute host ``target.host``
        (a storage service records exports by the compute host's name, as nova's did)."""
        record = session.call("host.get_record", host_ref)
        initiator = record.get("iscsi_iqn") or record["other_config"].get("iscsi_iqn")
        return VolumeConnector(
            host=target.host,
            ip=record["address"] or None,
            initiator=initiator or None,
            wwpns=[],
            multipath=bool(record.get("multipathing", False)),
            platform="x86_64",
            os_type="linux",
        )

    # ----------------------------------------------------------------------

    @staticmethod
    def _find_sr(session: PoolSession, sr_uuid: str) -> str | None:
        try:
            return str(session.call("SR.get_by_uuid", sr_uuid))
        except XenAPI.Failure as exc:
            if errors.code_of(exc) == errors.UUID_INVALID:
                return None
            raise

    @staticmethod
    def _plug(session: PoolSession, sr: str, host_ref: str, config: dict[str, str]) -> None:
        for pbd in session.call("SR.get_PBDs", sr):
            if session.call("PBD.get_host", pbd) == host_ref:
                break
        else:
            record = {"host": host_ref, "SR": sr, "device_config": config, "other_config": {}}
            pbd = session.call("PBD.create", record)
        session.run_task("PBD.plug", pbd)

    @staticmethod
    def _forget(session: PoolSession, sr: str) -> None:
        try:
            for pbd in session.call("SR.get_PBDs", sr):
                session.run_task("PBD.unplug", pbd)
            session.run_task("SR.forget", sr)
        except XenAPI.Failure as exc:
            LOG.warning("Could not forget volume SR %s: %s", sr, exc)


Locate = Any  # Callable[[PoolSession, str], str]


def _parse(target: Target, connection: VolumeConnection) -> tuple[str, str, dict[str, str], Locate]:
    """The SR uuid, SR type, PBD device_config and VDI finder of a volume."""
    kind = connection.driver_volume_type
    data: dict[str, Any] = connection.data
    if kind == "iscsi":
        return _iscsi(data)
    if kind == "nfs":
        return _nfs(data)
    raise exception.UnsupportedOperation(
        operation=f"{kind} volumes (the xenapi driver attaches {', '.join(SUPPORTED_TYPES)})",
        driver=constants.DRIVER,
        host=target.host,
    )


def _required(data: dict[str, Any], key: str, kind: str) -> str:
    value = data.get(key)
    if value in (None, ""):
        raise exception.InvalidRequest(
            operation="attach_volume", reason=f"{kind} connection_info.data lacks {key}"
        )
    return str(value)


def _iscsi(data: dict[str, Any]) -> tuple[str, str, dict[str, str], Locate]:
    portal = _required(data, "target_portal", "iscsi")
    iqn = _required(data, "target_iqn", "iscsi")
    lun = str(data.get("target_lun", 0))
    host, sep, port = portal.rpartition(":")
    if not sep or "]" in port:  # no port, or an IPv6 address without one
        host, port = portal, "3260"
    host = host.strip("[]")
    config = {"target": host, "port": port or "3260", "targetIQN": iqn}
    if data.get("auth_method") == "CHAP":
        config["chapuser"] = _required(data, "auth_username", "iscsi")
        config["chappassword"] = _required(data, "auth_password", "iscsi")
    sr_uuid = str(data.get("sr_uuid") or uuidlib.uuid5(_SR_NAMESPACE, f"{host}/{port}/{iqn}"))

    def locate(session: PoolSession, sr: str) -> str:
        for vdi in session.call("SR.get_VDIs", sr):
            if session.call("VDI.get_sm_config", vdi).get("LUNid") == lun:
                return str(vdi)
        raise _VolumeMissing(f"LUN {lun} of {iqn}")

    return sr_uuid, "iscsi", config, locate


def _nfs(data: dict[str, Any]) -> tuple[str, str, dict[str, str], Locate]:
    if data.get("export"):
        server, _, path = str(data["export"]).partition(":")
    else:
        server, path = _required(data, "server", "nfs"), _required(data, "serverpath", "nfs")
    if not server or not path:
        raise exception.InvalidRequest(
            operation="attach_volume", reason="nfs export must read server:/path"
        )
    vdi_uuid = _required(data, "vdi_uuid", "nfs")
    sr_uuid = str(data.get("sr_uuid") or uuidlib.uuid5(_SR_NAMESPACE, f"nfs:{server}:{path}"))

    def locate(session: PoolSession, sr: str) -> str:
        try:
            return str(session.call("VDI.get_by_uuid", vdi_uuid))
        except XenAPI.Failure as exc:
            if errors.code_of(exc) == errors.UUID_INVALID:
                raise _VolumeMissing(f"VDI {vdi_uuid} on {server}:{path}") from exc
            raise

    return sr_uuid, "nfs", {"server": server, "serverpath": path}, locate


class _VolumeMissing(Exception):
    """The volume's SR, scanned, lacks the volume's VDI."""
