"""The xapi message table and the dispatcher in front of it.

Dispatch follows xapi's generated server (ocaml/idl/ocaml_backend/gen_server.ml
and ocaml/xapi/server_helpers.ml):

1. ``Async.`` is stripped from the name; the rest is looked up.
2. Unknown name: if a session was passed it is checked first
   (``SESSION_INVALID``), then ``MESSAGE_METHOD_UNKNOWN [name]``.
3. Parameter count: ``MESSAGE_PARAMETER_COUNT_MISMATCH [name, expected,
   received]``, both counts *excluding* the session argument (a call with no
   argument at all reports ``-1``). Messages with default-valued parameters
   (``session.login_with_password``'s version/originator) accept any count
   from the mandatory ones up.
4. Session check (``SESSION_INVALID [ref]``), argument types
   (``FIELD_TYPE_ERROR [param]``).
5. ``Async.`` of a message without async mode:
   ``["Fault", "No async mode for this operation (rpc: NAME)"]``.
6. Sync: the value; Async: a task ref at once, the work in a thread.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import devices, methods, migration, records, storage, vmops
from . import errors as E
from .errors import XapiError, failure, success
from .state import Call, Fault, PoolState
from .wire import coerce, kind_of_default, task_result_xml, to_wire

Params = tuple[tuple[str, str], ...]


@dataclass
class Method:
    name: str
    params: Params
    handler: Callable[..., Any]
    session: bool = True
    async_ok: bool = False
    optional: int = 0
    self_faults: bool = False


# VM messages with parameters added since, which take their default when left out.
_VM_OPTIONAL = {"snapshot": 1}  # ignore_vdis, an empty set by default

# VM messages whose handler applies injected faults itself (inside
# vm_operation, while the VM shows the operation in current_operations).
_SELF_FAULTING = {
    "destroy",
    "clone",
    "copy",
    "snapshot",
    "provision",
    "start",
    "start_on",
    "pause",
    "unpause",
    "clean_shutdown",
    "hard_shutdown",
    "shutdown",
    "clean_reboot",
    "hard_reboot",
    "suspend",
    "resume",
    "resume_on",
    "pool_migrate",
    "set_is_a_template",
    "set_memory_static_max",
    "set_memory_static_min",
    "set_memory_dynamic_max",
    "set_memory_dynamic_min",
    "set_memory_dynamic_range",
    "set_memory_static_range",
    "set_memory_limits",
    "set_memory",
    "set_VCPUs_max",
    "set_VCPUs_at_startup",
}


def _generic(cls: str, table: dict[str, Method]) -> None:
    """The accessors xapi generates for every class."""
    defaults = records.DEFAULTS[cls]()
    kinds = records.FIELD_KINDS.get(cls, {})

    def add(name: str, params: Params, handler: Callable[..., Any], async_ok: bool = False) -> None:
        table[f"{cls}.{name}"] = Method(f"{cls}.{name}", params, handler, async_ok=async_ok)

    add("get_all", (), lambda call: call.pool.refs(cls))

    def get_all_records(call: Call) -> dict[str, dict[str, Any]]:
        with call.pool.lock:
            return {r: call.pool.view(cls, r) for r in call.pool.refs(cls)}

    add("get_all_records", (), get_all_records)
    add("get_record", (("self", "ref"),), lambda call, ref: call.pool.view(cls, ref))
    add("get_by_uuid", (("uuid", "string"),), lambda call, uuid: call.pool.by_uuid(cls, uuid))
    if "name_label" in defaults:
        add(
            "get_by_name_label",
            (("label", "string"),),
            lambda call, label: [
                r for r, rec in call.pool.items(cls) if rec["name_label"] == label
            ],
        )
    for fld in defaults:
        add(
            f"get_{fld}",
            (("self", "ref"),),
            lambda call, ref, fld=fld: call.pool.view(cls, ref)[fld],
        )
    for fld in records.SIMPLE_SETTERS.get(cls, ()):
        kind = kinds.get(fld) or kind_of_default(defaults[fld])
        add(f"set_{fld}", (("self", "ref"), ("value", kind)), _setter(cls, fld))
        if kind == "map":
            add(
                f"add_to_{fld}",
                (("self", "ref"), ("key", "string"), ("value", "string")),
                _map_add(cls, fld),
            )
            add(f"remove_from_{fld}", (("self", "ref"), ("key", "string")), _map_remove(cls, fld))
        elif kind == "set" and fld == "tags":
            add(f"add_{fld}", (("self", "ref"), ("value", "string")), _set_add(cls, fld))
            add(
                f"remove_{fld}",
                (("self", "ref"), ("value", "string")),
                _set_add(cls, fld, remove=True),
            )


def _setter(cls: str, fld: str) -> Callable[..., None]:
    def handler(call: Call, ref: str, value: Any) -> None:
        call.pool.update(cls, ref, **{fld: value})

    return handler


def _map_add(cls: str, fld: str) -> Callable[..., None]:
    def handler(call: Call, ref: str, key: str, value: str) -> None:
        with call.pool.lock:
            rec = call.pool.get(cls, ref)
            if key in rec[fld]:
                raise XapiError(E.MAP_DUPLICATE_KEY, cls, fld, rec["uuid"], key)
            call.pool.update(cls, ref, **{fld: {**rec[fld], key: value}})

    return handler


def _map_remove(cls: str, fld: str) -> Callable[..., None]:
    def handler(call: Call, ref: str, key: str) -> None:
        with call.pool.lock:
            rec = call.pool.get(cls, ref)
            call.pool.update(cls, ref, **{fld: {k: v for k, v in rec[fld].items() if k != key}})

    return handler


def _set_add(cls: str, fld: str, remove: bool = False) -> Callable[..., None]:
    def handler(call: Call, ref: str, value: str) -> None:
        with call.pool.lock:
            items = [v for v in call.pool.get(cls, ref)[fld] if v != value]
            call.pool.update(cls, ref, **{fld: items if remove else items + [value]})

    return handler


def _login(call: Call, uname: str, pwd: str, version: str = "1.0", originator: str = "") -> str:
    return call.pool.login(uname, pwd, originator)


def _logout(call: Call) -> None:
    call.pool.logout(call.session)


def build_methods() -> dict[str, Method]:
    table: dict[str, Method] = {}
    for cls in records.CLASSES:
        _generic(cls, table)
    for name, (params, handler, async_ok) in methods.VM_HANDLERS.items():
        table[f"VM.{name}"] = Method(
            f"VM.{name}",
            params,
            handler,
            async_ok=async_ok,
            optional=_VM_OPTIONAL.get(name, 0),
            self_faults=name in _SELF_FAULTING,
        )
    for name, (params, handler, async_ok) in methods.OTHER_HANDLERS.items():
        table[name] = Method(name, params, handler, async_ok=async_ok)
    for name, (params, handler, async_ok) in devices.HANDLERS.items():
        table[name] = Method(name, params, handler, async_ok=async_ok)
    for name, (params, handler, async_ok, optional) in storage.HANDLERS.items():
        table[name] = Method(name, params, handler, async_ok=async_ok, optional=optional)
    table["session.login_with_password"] = Method(
        "session.login_with_password",
        (("uname", "string"), ("pwd", "string"), ("version", "string"), ("originator", "string")),
        _login,
        session=False,
        optional=2,
    )
    table["session.logout"] = Method("session.logout", (), _logout)
    table["session.local_logout"] = Method("session.local_logout", (), _logout)
    return table


METHODS = build_methods()


class Dispatcher:
    """Serves xapi calls for one pool (plus the optional ``testing.*`` namespace)."""

    def __init__(self, pool: PoolState, testing_api: bool = True) -> None:
        self.pool = pool
        self.testing_api = testing_api
        pool.views["VM"] = lambda ref, rec: vmops.vm_view(pool, ref, rec)
        pool.views["VBD"] = lambda ref, rec: devices.vbd_view(pool, ref, rec)
        pool.views["VIF"] = lambda ref, rec: devices.vif_view(pool, ref, rec)

    def dispatch(self, name: str, params: tuple[Any, ...]) -> dict[str, Any]:
        try:
            if self.testing_api and name.startswith("testing."):
                return success(to_wire(self._testing(name, list(params))))
            return self._dispatch(name, list(params))
        except XapiError as exc:
            return failure(exc.description)
        except Exception as exc:  # noqa: BLE001 - every error must become a reply
            traceback.print_exc()
            return failure([E.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"])

    def _dispatch(self, name: str, params: list[Any]) -> dict[str, Any]:
        is_async = name.startswith("Async.")
        base = name[len("Async.") :] if is_async else name
        method = METHODS.get(base)
        if method is None:
            if params:
                self.pool.check_session(params[0])
            raise XapiError(E.MESSAGE_METHOD_UNKNOWN, base)
        offset = 1 if method.session else 0
        received = len(params) - offset
        mandatory = len(method.params) - method.optional
        if received < mandatory or (method.optional == 0 and received != mandatory):
            raise XapiError(E.MESSAGE_PARAMETER_COUNT_MISMATCH, base, mandatory, received)
        session = self.pool.check_session(params[0]).ref if method.session else ""
        raw = params[offset : offset + len(method.params)]
        args = [
            coerce(kind, value, pname)
            for (pname, kind), value in zip(method.params, raw, strict=False)
        ]
        if is_async and not method.async_ok:
            return failure(["Fault", f"No async mode for this operation (rpc: {base})"])
        call = Call(self.pool, base, session=session, fault=self.pool.take_fault(base, args))
        if not is_async:
            return success(to_wire(self._run(method, call, args)))
        call.task = self.pool.create_task(name)
        threading.Thread(
            target=self._run_task, args=(method, call, args), name=f"xapi-task-{base}", daemon=True
        ).start()
        return success(call.task)

    @staticmethod
    def _run(method: Method, call: Call, args: list[Any]) -> Any:
        if not method.self_faults:
            call.apply_fault()
        return method.handler(call, *args)

    def _run_task(self, method: Method, call: Call, args: list[Any]) -> None:
        assert call.task is not None
        try:
            result = self._run(method, call, args)
        except XapiError as exc:
            self.pool.finish_task(call.task, error=exc.description)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.pool.finish_task(call.task, error=[E.INTERNAL_ERROR, str(exc)])
        else:
            self.pool.finish_task(call.task, result_xml=task_result_xml(result))

    # ------------------------------------------------------------ testing.*

    def _testing(self, name: str, params: list[Any]) -> Any:
        """Control calls for tests; no session. See README.md."""
        pool = self.pool
        if name == "testing.expire_sessions":
            return pool.expire_sessions()
        if name == "testing.set_session_ttl":
            ttl = float(params[0]) if params else 0.0
            pool.session_ttl = ttl if ttl > 0 else None
            return True
        if name in ("testing.inject_failure", "testing.set_delay"):
            method = str(params[0])
            if name == "testing.inject_failure":
                description, delay = [str(p) for p in params[1]], 0.0
            else:
                description, delay = None, float(params[1])
            count = int(params[2]) if len(params) > 2 and int(params[2]) > 0 else None
            ref = str(params[3]) if len(params) > 3 and params[3] else None
            pool.inject(Fault(method, description, delay, count, ref))
            return True
        if name == "testing.clear_faults":
            pool.clear_faults()
            return True
        if name == "testing.set_host_live":
            host = migration.host_by_name(pool, str(params[0]))
            migration.set_host_live(pool, host, bool(params[1]))
            return True
        if name == "testing.set_power_state":
            vmops.set_power_state(pool, str(params[0]), str(params[1]))
            return True
        if name == "testing.add_iscsi_lun":
            iqn, portal, lun, size = (str(p) for p in params[:4])
            with pool.lock:
                return pool.backends.add_lun(iqn, portal, int(lun), int(size)).vdi_uuid
        if name == "testing.resize_iscsi_lun":
            iqn, lun, size = (str(p) for p in params[:3])
            with pool.lock:
                target = pool.backends.targets.get(iqn)
                if target is None or lun not in target.luns:
                    raise XapiError(E.INVALID_VALUE, "lun", f"{iqn}/{lun}")
                target.luns[lun].size = int(size)
            return True
        if name == "testing.add_nfs_vdi":
            server, path, uuid, size = (str(p) for p in params[:4])
            with pool.lock:
                pool.backends.exports.setdefault((server, path), {})[uuid] = int(size)
            return True
        raise XapiError(E.MESSAGE_METHOD_UNKNOWN, name)


def method_names() -> list[str]:
    return sorted(METHODS)
