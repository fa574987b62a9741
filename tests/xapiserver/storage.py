"""Storage: SRs, PBDs and the VDI operations that need a storage backend.

What xapi delegates to its storage managers (SM) is modelled by
:class:`Backends`: iSCSI targets whose LUNs are volumes, and NFS exports
whose files are VDIs, which tests add through the facade or ``testing.*``.
The rules follow ocaml/xapi/xapi_sr.ml, xapi_pbd.ml and xapi_vdi.ml:

* ``SR.introduce(uuid, name_label, name_description, type, content_type,
  shared, sm_config)`` makes the record only (physical size -1);
  ``PBD.create({host, SR, device_config, other_config})`` (``PBD_EXISTS
  [sr, host, pbd]`` for a second PBD of the host); ``PBD.plug`` attaches
  the SR (idempotent), failing as SM would: ``SR_BACKEND_FAILURE_<n> ["",
  description, ""]``; ``PBD.unplug`` (``VDI_IN_USE [vdi, ...]`` while a VDI
  of the SR is attached to a VM on that host); ``PBD.destroy``
  (``OPERATION_NOT_ALLOWED ["PBD is currently attached"]``); ``SR.scan``
  (``SR_NO_PBDS [sr]`` unless plugged) brings the SR's VDIs in line with the
  backend; ``SR.forget`` (``SR_HAS_PBD [sr]`` while a PBD is plugged) drops
  the SR, its PBDs, its VDIs and their VBDs.
* SR types: ``lvm`` (local storage: create, delete, resize, clone),
  ``iscsi`` (a LUN per VDI, ``sm_config`` ``LUNid`` and ``SCSIid``; no
  create, delete, resize or clone), ``nfs`` (a file per VDI, named by its
  uuid: create, delete, resize, clone). No type has online resize.
* ``VDI.resize(vdi, size)`` needs the VDI detached (``VDI_IN_USE [vdi,
  "resize"]``) and never shrinks (``SR_BACKEND_FAILURE_79``);
  ``VDI.resize_online`` is ``SR_OPERATION_NOT_SUPPORTED [sr]``;
  ``VDI.clone(vdi[, driver_params])`` works on attached VDIs too;
  ``VDI.copy(vdi, sr)`` needs the VDI detached (``VDI_IN_USE [vdi, "copy"]``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from . import errors as E
from . import vmops
from .backends import IscsiTarget
from .errors import XapiError
from .state import Call, PoolState
from .wire import new_uuid

#: SM capabilities of the SR types modelled.
CAPABILITIES: dict[str, frozenset[str]] = {
    "lvm": frozenset({"VDI_CREATE", "VDI_DELETE", "VDI_RESIZE", "VDI_CLONE", "VDI_SNAPSHOT"}),
    "iscsi": frozenset({"VDI_INTRODUCE"}),
    "nfs": frozenset({"VDI_CREATE", "VDI_DELETE", "VDI_RESIZE", "VDI_CLONE", "VDI_SNAPSHOT"}),
}
#: SR_BACKEND_FAILURE codes and descriptions (sm's XE_SR_ERRORCODES.xml).
ISCSI_LOGIN = (68, "ISCSI login failed - check access settings for the initiator on the storage")
ISCSI_DISCOVERY = (83, "ISCSI discovery failed")
TARGET_MISSING = (95, "The request is missing the target parameter")
TARGET_IQN_MISSING = (96, "The request is missing or has an incorrect target IQN parameter")
NFS_MOUNT = (73, "NFS mount error")
VDI_SIZE = (79, "VDI Invalid size")


def backend_failure(error: tuple[int, str], opterr: str = "") -> XapiError:
    text = f"{error[1]} [opterr={opterr}]" if opterr else error[1]
    return XapiError(f"SR_BACKEND_FAILURE_{error[0]}", "", text, "")


def assert_capability(pool: PoolState, sr_ref: str, capability: str) -> None:
    if capability not in CAPABILITIES.get(pool.get("SR", sr_ref)["type"], frozenset()):
        raise XapiError(E.SR_OPERATION_NOT_SUPPORTED, sr_ref)


def assert_plugged(pool: PoolState, sr_ref: str) -> None:
    """Sm.assert_pbd_is_plugged."""
    sr = pool.get("SR", sr_ref)
    if not any(pool.get("PBD", p)["currently_attached"] for p in sr["PBDs"]):
        raise XapiError(E.SR_NO_PBDS, sr_ref)


def _active_vbds(pool: PoolState, vdi: dict[str, Any]) -> list[dict[str, Any]]:
    vbds = (pool.get("VBD", r) for r in vdi["VBDs"] if pool.exists("VBD", r))
    return [v for v in vbds if v["currently_attached"]]


# ---------------------------------------------------------------- SR and PBD


def sr_introduce(
    call: Call,
    uuid: str,
    name_label: str,
    name_description: str,
    sr_type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    pool = call.pool
    with pool.lock:
        uuid = uuid or new_uuid()
        if any(rec["uuid"] == uuid for _, rec in pool.items("SR")):
            violation = f'Db_exn.Uniqueness_constraint_violation("SR", "uuid", "{uuid}")'
            raise XapiError(E.INTERNAL_ERROR, violation)
        fields = {
            "uuid": uuid,
            "name_label": name_label,
            "name_description": name_description,
            "type": sr_type.lower(),
            "content_type": content_type,
            "shared": shared,
            "sm_config": sm_config,
            "physical_size": -1,
            "physical_utilisation": -1,
        }
        return pool.add("SR", fields)


def sr_forget(call: Call, sr_ref: str) -> None:
    pool = call.pool
    with pool.lock:
        sr = pool.get("SR", sr_ref)
        if any(pool.get("PBD", p)["currently_attached"] for p in sr["PBDs"]):
            raise XapiError(E.SR_HAS_PBD, sr_ref)
        for pbd in list(sr["PBDs"]):
            _remove_pbd(pool, pbd)
        for vdi in list(sr["VDIs"]):
            forget_vdi(pool, vdi)
        pool.remove("SR", sr_ref)


def forget_vdi(pool: PoolState, vdi_ref: str) -> None:
    """Drop a VDI's record and its VBDs (xapi's database GC drops those)."""
    vdi = pool.get("VDI", vdi_ref)
    for vbd in list(vdi["VBDs"]):
        if pool.exists("VBD", vbd):
            pool.link("VM", pool.get("VBD", vbd)["VM"], "VBDs", vbd, add=False)
            pool.remove("VBD", vbd)
    pool.link("SR", vdi["SR"], "VDIs", vdi_ref, add=False)
    pool.remove("VDI", vdi_ref)


def pbd_create(call: Call, struct: dict[str, Any]) -> str:
    from .methods import build_record

    fields = build_record(
        "PBD",
        struct,
        ("host", "SR", "device_config"),
        ("other_config",),
        {"host": "ref", "SR": "ref"},
    )
    pool = call.pool
    with pool.lock:
        sr = pool.get("SR", fields["SR"])
        pool.get("host", fields["host"])
        for other in sr["PBDs"]:
            if pool.get("PBD", other)["host"] == fields["host"]:
                raise XapiError(E.PBD_EXISTS, fields["SR"], fields["host"], other)
        ref = pool.add("PBD", {**fields, "currently_attached": False})
        pool.link("SR", fields["SR"], "PBDs", ref)
        pool.link("host", fields["host"], "PBDs", ref)
        return ref


def pbd_plug(call: Call, ref: str) -> None:
    pool = call.pool
    with pool.lock:
        pbd = pool.get("PBD", ref)
        if pbd["currently_attached"]:
            return
        sr_ref = pbd["SR"]
        sr = pool.get("SR", sr_ref)
        if not sr["shared"]:
            for other in sr["PBDs"]:
                rec = pool.get("PBD", other)
                if other != ref and rec["currently_attached"]:
                    raise XapiError(E.SR_NOT_SHARABLE, sr_ref, rec["host"])
        size = _attach(pool, sr["type"], pbd["device_config"])
        pool.update("PBD", ref, currently_attached=True)
        if size is not None:
            pool.update("SR", sr_ref, physical_size=size)


def _attach(pool: PoolState, sr_type: str, config: dict[str, str]) -> int | None:
    """What SM's SR.attach checks; the SR's size, if the backend knows it."""
    if sr_type == "lvm":
        return None
    if sr_type == "iscsi":
        target = _target(pool, config)
        return sum(lun.size for lun in target.luns.values())
    if sr_type == "nfs":
        return sum(_export(pool, config).values())
    raise XapiError(E.SR_UNKNOWN_DRIVER, sr_type)


def _target(pool: PoolState, config: dict[str, str]) -> IscsiTarget:
    if not config.get("target"):
        raise backend_failure(TARGET_MISSING)
    if not config.get("targetIQN"):
        raise backend_failure(TARGET_IQN_MISSING)
    hosts = {t.host for t in pool.backends.targets.values()}
    if config["target"] not in hosts:
        raise backend_failure(ISCSI_DISCOVERY, f"no iSCSI portal at {config['target']}")
    target = pool.backends.targets.get(config["targetIQN"])
    port = int(config.get("port") or 3260)
    if target is None or (target.host, target.port) != (config["target"], port):
        raise backend_failure(ISCSI_LOGIN, f"no target {config['targetIQN']}")
    given = (config.get("chapuser", ""), config.get("chappassword", ""))
    if target.chap is not None and given != target.chap:
        raise backend_failure(ISCSI_LOGIN, "CHAP authentication failed")
    return target


def _export(pool: PoolState, config: dict[str, str]) -> dict[str, int]:
    key = (config.get("server", ""), config.get("serverpath", ""))
    if key not in pool.backends.exports:
        raise backend_failure(NFS_MOUNT, f"cannot mount {key[0]}:{key[1]}")
    return pool.backends.exports[key]


def pbd_unplug(call: Call, ref: str) -> None:
    pool = call.pool
    with pool.lock:
        pbd = pool.get("PBD", ref)
        if not pbd["currently_attached"]:
            return
        in_use = []
        for vdi_ref in pool.get("SR", pbd["SR"])["VDIs"]:
            for vbd in _active_vbds(pool, pool.get("VDI", vdi_ref)):
                if pool.get("VM", vbd["VM"])["resident_on"] == pbd["host"]:
                    in_use.append(vdi_ref)
        if in_use:
            raise XapiError(E.VDI_IN_USE, *sorted(set(in_use)))
        pool.update("PBD", ref, currently_attached=False)


def pbd_destroy(call: Call, ref: str) -> None:
    pool = call.pool
    with pool.lock:
        if pool.get("PBD", ref)["currently_attached"]:
            raise XapiError(E.OPERATION_NOT_ALLOWED, "PBD is currently attached")
        _remove_pbd(pool, ref)


def _remove_pbd(pool: PoolState, ref: str) -> None:
    pbd = pool.get("PBD", ref)
    pool.link("SR", pbd["SR"], "PBDs", ref, add=False)
    pool.link("host", pbd["host"], "PBDs", ref, add=False)
    pool.remove("PBD", ref)


def sr_scan(call: Call, sr_ref: str) -> None:
    """Bring the SR's VDIs in line with its backend's LUNs or files."""
    pool = call.pool
    with pool.lock:
        assert_plugged(pool, sr_ref)
        sr = pool.get("SR", sr_ref)
        config = next(
            pool.get("PBD", p)["device_config"]
            for p in sr["PBDs"]
            if pool.get("PBD", p)["currently_attached"]
        )
        if sr["type"] == "iscsi":
            found = {
                lun.vdi_uuid: (lun.size, {"LUNid": number, "SCSIid": lun.scsi_id})
                for number, lun in _target(pool, config).luns.items()
            }
        elif sr["type"] == "nfs":
            found = {uuid: (size, {}) for uuid, size in _export(pool, config).items()}
        else:
            return
        known = {pool.get("VDI", v)["uuid"]: v for v in sr["VDIs"]}
        for uuid, vdi_ref in known.items():
            if uuid not in found:
                forget_vdi(pool, vdi_ref)
        for uuid, (size, sm_config) in found.items():
            if uuid in known:
                pool.update("VDI", known[uuid], virtual_size=size)
                continue
            vmops.new_vdi(
                pool,
                {
                    "uuid": uuid,
                    "name_label": "",
                    "SR": sr_ref,
                    "virtual_size": size,
                    "physical_utilisation": size,
                    "type": "user",
                    "sm_config": sm_config,
                    "location": sm_config.get("SCSIid", uuid),
                },
            )
        pool.update("SR", sr_ref, physical_size=sum(size for size, _ in found.values()))


# ---------------------------------------------------------------- VDI


def vdi_resize(call: Call, ref: str, size: int) -> None:
    pool = call.pool
    with pool.lock:
        vdi = pool.get("VDI", ref)
        assert_plugged(pool, vdi["SR"])
        if _active_vbds(pool, vdi):
            raise XapiError(E.VDI_IN_USE, ref, "resize")
        assert_capability(pool, vdi["SR"], "VDI_RESIZE")
        if size < vdi["virtual_size"]:
            raise backend_failure(VDI_SIZE, "shrinking not allowed")
        pool.update("VDI", ref, virtual_size=size)


def vdi_resize_online(call: Call, ref: str, size: int) -> None:
    pool = call.pool
    with pool.lock:
        vdi = pool.get("VDI", ref)
        assert_plugged(pool, vdi["SR"])
        assert_capability(pool, vdi["SR"], "VDI_RESIZE_ONLINE")


def vdi_clone(call: Call, ref: str, driver_params: dict[str, str] | None = None) -> str:
    pool = call.pool
    with pool.lock:
        vdi = pool.get("VDI", ref)
        assert_plugged(pool, vdi["SR"])
        assert_capability(pool, vdi["SR"], "VDI_CLONE")
        return _duplicate(pool, vdi, vdi["SR"])


def vdi_copy(call: Call, ref: str, sr_ref: str) -> str:
    pool = call.pool
    with pool.lock:
        vdi = pool.get("VDI", ref)
        pool.get("SR", sr_ref)
        if _active_vbds(pool, vdi):
            raise XapiError(E.VDI_IN_USE, ref, "copy")
        assert_plugged(pool, sr_ref)
        assert_capability(pool, sr_ref, "VDI_CREATE")
        return _duplicate(pool, vdi, sr_ref)


def _duplicate(pool: PoolState, vdi: dict[str, Any], sr_ref: str) -> str:
    fields = {
        key: copy.deepcopy(vdi[key])
        for key in (
            "name_label",
            "name_description",
            "virtual_size",
            "physical_utilisation",
            "type",
            "sharable",
            "other_config",
            "xenstore_data",
            "on_boot",
            "allow_caching",
        )
    }
    return vmops.new_vdi(pool, {**fields, "SR": sr_ref, "read_only": False})


def add_image(pool: PoolState, name: str, size: int) -> str:
    """An image imported into the default SR (``xe vdi-import``): a VDI named
    ``name`` of type ``user`` that belongs to no VM, which drivers clone."""
    with pool.lock:
        return vmops.new_vdi(
            pool,
            {
                "name_label": name,
                "name_description": f"image {name}",
                "SR": pool.default_sr,
                "virtual_size": size,
                "physical_utilisation": size,
                "type": "user",
            },
        )


def vdi_destroy_allowed(pool: PoolState, ref: str) -> None:
    """What VDI.destroy checks beyond VDI_IN_USE: a plugged SR that can delete."""
    vdi = pool.get("VDI", ref)
    if pool.get("SR", vdi["SR"])["PBDs"]:
        assert_plugged(pool, vdi["SR"])
    assert_capability(pool, vdi["SR"], "VDI_DELETE")


_Handler = tuple[tuple[tuple[str, str], ...], Callable[..., Any], bool, int]

HANDLERS: dict[str, _Handler] = {
    "SR.introduce": (
        (
            ("uuid", "string"),
            ("name_label", "string"),
            ("name_description", "string"),
            ("type", "string"),
            ("content_type", "string"),
            ("shared", "bool"),
            ("sm_config", "map"),
        ),
        sr_introduce,
        True,
        0,
    ),
    "SR.forget": ((("sr", "ref"),), sr_forget, True, 0),
    "SR.scan": ((("sr", "ref"),), sr_scan, True, 0),
    "PBD.create": ((("args", "record"),), pbd_create, True, 0),
    "PBD.plug": ((("self", "ref"),), pbd_plug, True, 0),
    "PBD.unplug": ((("self", "ref"),), pbd_unplug, True, 0),
    "PBD.destroy": ((("self", "ref"),), pbd_destroy, True, 0),
    "VDI.resize": ((("vdi", "ref"), ("size", "int")), vdi_resize, True, 0),
    "VDI.resize_online": ((("vdi", "ref"), ("size", "int")), vdi_resize_online, True, 0),
    "VDI.clone": ((("vdi", "ref"), ("driver_params", "map")), vdi_clone, True, 1),
    "VDI.copy": (
        (("vdi", "ref"), ("sr", "ref"), ("base_vdi", "ref"), ("into_vdi", "ref")),
        lambda call, vdi, sr, *_: vdi_copy(call, vdi, sr),
        True,
        2,
    ),
}
