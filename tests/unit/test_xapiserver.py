"""The xapi test server, driven only through the unmodified ``XenAPI`` client.

Every call below crosses real XML-RPC over HTTP(S) to tests.xapiserver.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import xmlrpc.client

import pytest

XenAPI = pytest.importorskip("XenAPI")

from tests.xapiserver import (  # noqa: E402
    HostSpec,
    PoolSpec,
    XapiTestServer,
    hypervisor,
    make_self_signed_cert,
    provision,
)

pytestmark = pytest.mark.xenapi

GiB = 1024**3
USER, PASSWORD = "root", "s3cret"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def close(session, logout=True):
    """Log out (if still logged in) and close the client's HTTP connection."""
    try:
        if logout and session.handle:
            session.xenapi.session.logout()
    finally:
        session("close")()


def failure_of(fn, *args):
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return info.value.details


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def wait_task(x, task, timeout=5.0):
    deadline = time.monotonic() + timeout
    while x.task.get_status(task) in ("pending", "cancelling"):
        assert time.monotonic() < deadline, "task did not finish"
        time.sleep(0.02)
    return x.task.get_record(task)


@pytest.fixture(scope="module")
def server():
    srv = XapiTestServer(
        pools=[
            PoolSpec(
                "alpha",
                USER,
                PASSWORD,
                [
                    HostSpec("alpha-1", memory_total=64 * GiB),
                    HostSpec("alpha-2", memory_total=64 * GiB),
                ],
            ),
            PoolSpec("small", "admin", "pw", [HostSpec("small-1", memory_total=4 * GiB)]),
        ]
    )
    with srv:
        yield srv


@pytest.fixture
def session(server):
    s = XenAPI.Session(server.url_for("alpha"))
    s.xenapi.login_with_password(USER, PASSWORD, "2.21", "test_xapiserver")
    yield s
    server.clear_faults()
    close(s)


@pytest.fixture
def x(session):
    return session.xenapi


def template(x, name="Other install media"):
    refs = x.VM.get_by_name_label(name)
    assert len(refs) == 1
    return refs[0]


def new_vm(x, name="vm", memory=None):
    vm = x.VM.clone(template(x), name)
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    if memory is not None:
        x.VM.set_memory_limits(vm, str(memory), str(memory), str(memory), str(memory))
    return vm


def vm_in_state(x, state):
    vm = new_vm(x, f"vm-{state.lower()}", memory=256 * 1024 * 1024)
    if state == "Running":
        x.VM.start(vm, False, False)
    elif state == "Paused":
        x.VM.start(vm, True, False)
    elif state == "Suspended":
        x.VM.start(vm, False, False)
        x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == state
    return vm


# ---------------------------------------------------------------- sessions


def test_login_returns_opaque_ref_and_api_version(session):
    assert session.handle.startswith("OpaqueRef:")
    assert session.API_version == "2.21"


def test_login_with_bad_password_fails(server):
    s = XenAPI.Session(server.url_for("alpha"))
    assert failure_of(s.xenapi.login_with_password, USER, "wrong", "2.21", "t") == [
        "SESSION_AUTHENTICATION_FAILED",
        USER,
        "Authentication failure",
    ]
    assert s.handle is None
    close(s, logout=False)


def test_pools_have_their_own_credentials_and_objects(server):
    small = XenAPI.Session(server.url_for("small"))
    assert (
        failure_of(small.xenapi.login_with_password, USER, PASSWORD, "2.21", "t")[0]
        == "SESSION_AUTHENTICATION_FAILED"
    )
    small.xenapi.login_with_password("admin", "pw", "2.21", "t")
    hosts = small.xenapi.host.get_all_records()
    assert [h["name_label"] for h in hosts.values()] == ["small-1"]
    pool = small.xenapi.pool.get_all()[0]
    assert small.xenapi.pool.get_record(pool)["name_label"] == "small"
    close(small)


def test_expired_sessions_are_renewed_by_the_client(server, session, x):
    first = session.handle
    assert server.expire_sessions() >= 1
    assert x.pool.get_all()
    assert session.handle != first and session.handle.startswith("OpaqueRef:")


def test_session_ttl_expires_idle_sessions(server, session, x):
    server.set_session_ttl(0.3, pool="alpha")
    try:
        first = session.handle
        time.sleep(0.5)
        assert x.host.get_all()
        assert session.handle != first
    finally:
        server.set_session_ttl(None, pool="alpha")


def test_calls_after_logout_are_refused_by_the_client(server):
    s = XenAPI.Session(server.url_for("alpha"))
    s.xenapi.login_with_password(USER, PASSWORD, "2.21", "t")
    s.xenapi.session.logout()
    with pytest.raises(xmlrpc.client.Fault) as info:
        s.xenapi.VM.get_all()
    assert info.value.faultCode == 401
    close(s, logout=False)


# ---------------------------------------------------------------- wire types


def test_int64_fields_travel_as_strings(x):
    vm = new_vm(x, "ints")
    rec = x.VM.get_record(vm)
    assert rec["memory_static_max"] == str(2 * GiB)
    assert x.VM.get_memory_static_max(vm) == str(2 * GiB)
    assert isinstance(rec["VCPUs_max"], str) and rec["VCPUs_max"] == "1"
    assert isinstance(rec["domid"], str) and rec["domid"] == "-1"
    assert isinstance(rec["is_a_template"], bool)
    assert isinstance(rec["HVM_shadow_multiplier"], float)
    assert isinstance(rec["snapshot_time"], xmlrpc.client.DateTime)
    assert rec["snapshot_time"].value == "19700101T00:00:00Z"
    x.VM.set_memory_limits(vm, str(GiB), str(6 * GiB), str(6 * GiB), str(6 * GiB))
    assert x.VM.get_memory_dynamic_max(vm) == str(6 * GiB)
    metrics = x.host_metrics.get_record(x.host.get_metrics(x.host.get_all()[0]))
    assert metrics["memory_total"] == str(64 * GiB)
    master = x.pool.get_master(x.pool.get_all()[0])
    assert x.host.get_API_version_major(master) == "2"


def test_refs_and_null_ref(x):
    vm = new_vm(x, "refs")
    assert vm.startswith("OpaqueRef:")
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    assert x.VM.get_by_uuid(x.VM.get_uuid(vm)) == vm


# ---------------------------------------------------------------- lifecycle


def test_full_lifecycle_from_template(x):
    tmpl = template(x)
    assert x.VM.get_is_a_template(tmpl) is True
    vm = x.VM.clone(tmpl, "web-1")
    assert x.VM.get_is_a_template(vm) is True
    assert x.VM.get_VBDs(vm) == []
    x.VM.provision(vm)
    vbds = x.VM.get_VBDs(vm)
    assert len(vbds) == 1
    vdi = x.VBD.get_VDI(vbds[0])
    assert x.VDI.get_virtual_size(vdi) == str(8 * GiB)
    x.VM.set_is_a_template(vm, False)
    x.VM.set_name_label(vm, "web-1-renamed")
    x.VM.set_VCPUs_max(vm, "2")
    x.VM.set_VCPUs_at_startup(vm, "2")
    x.VM.set_memory_limits(vm, str(GiB), str(2 * GiB), str(2 * GiB), str(2 * GiB))
    x.VM.start(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running" and rec["name_label"] == "web-1-renamed"
    assert rec["resident_on"] in x.host.get_all()
    assert int(rec["domid"]) > 0
    assert x.VBD.get_currently_attached(vbds[0]) is True
    assert x.VM_metrics.get_VCPUs_number(rec["metrics"]) == "2"
    for op, expect in (("pause", "Paused"), ("unpause", "Running"), ("suspend", "Suspended")):
        getattr(x.VM, op)(vm)
        assert x.VM.get_power_state(vm) == expect
    assert x.VM.get_suspend_VDI(vm) != "OpaqueRef:NULL"
    x.VM.resume(vm, False, False)
    x.VM.clean_reboot(vm)
    x.VM.hard_reboot(vm)
    x.VM.clean_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    # destroy with its disks: VM.destroy leaves VDIs, so the driver deletes them first
    x.VDI.destroy(vdi)
    assert x.VM.get_VBDs(vm) == []
    x.VM.destroy(vm)
    assert failure_of(x.VM.get_record, vm) == ["HANDLE_INVALID", "VM", vm]
    assert failure_of(x.VDI.get_record, vdi) == ["HANDLE_INVALID", "VDI", vdi]


def test_vm_destroy_keeps_vdis(x):
    vm = new_vm(x, "keeps-disks")
    vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    x.VM.destroy(vm)
    assert x.VDI.get_VBDs(vdi) == []
    x.VDI.destroy(vdi)


def test_copy_places_disks_in_the_given_sr(x):
    vm = new_vm(x, "orig")
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    copy = x.VM.copy(vm, "copy", sr)
    vdi = x.VBD.get_VDI(x.VM.get_VBDs(copy)[0])
    assert vdi != x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    assert x.VDI.get_SR(vdi) == sr


POWER_OPS = {
    # op: (allowed states in xapi order, resulting state)
    "start": (("Halted",), "Running"),
    "clean_shutdown": (("Running",), "Halted"),
    "clean_reboot": (("Running",), "Running"),
    "pause": (("Running",), "Paused"),
    "suspend": (("Running",), "Suspended"),
    "unpause": (("Paused",), "Running"),
    "resume": (("Suspended",), "Running"),
    "hard_shutdown": (("Paused", "Suspended", "Running"), "Halted"),
    "hard_reboot": (("Paused", "Running"), "Running"),
    "destroy": (("Halted", "Suspended"), None),
}
STATES = ("Halted", "Running", "Paused", "Suspended")


def call_op(x, op, vm):
    if op in ("start", "resume"):
        return getattr(x.VM, op)(vm, False, False)
    return getattr(x.VM, op)(vm)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("op", sorted(POWER_OPS))
def test_power_state_table(x, op, state):
    allowed, result = POWER_OPS[op]
    vm = vm_in_state(x, state)
    if state in allowed:
        call_op(x, op, vm)
        if result is None:
            assert failure_of(x.VM.get_record, vm) == ["HANDLE_INVALID", "VM", vm]
        else:
            assert x.VM.get_power_state(vm) == result
    else:
        expected = ", ".join(s.lower() for s in allowed)
        assert failure_of(call_op, x, op, vm) == ["VM_BAD_POWER_STATE", vm, expected, state.lower()]
        assert x.VM.get_power_state(vm) == state


def test_allowed_operations_follow_power_state(x):
    vm = vm_in_state(x, "Running")
    ops = set(x.VM.get_allowed_operations(vm))
    assert {"clean_shutdown", "hard_shutdown", "pause", "suspend", "clean_reboot"} <= ops
    assert "start" not in ops and "destroy" not in ops


def test_templates_refuse_lifecycle_operations(x):
    tmpl = template(x)
    assert failure_of(x.VM.start, tmpl, False, False) == ["VM_IS_TEMPLATE", tmpl, "start"]
    # the power state is checked before the template flag
    assert failure_of(x.VM.clean_shutdown, tmpl) == [
        "VM_BAD_POWER_STATE",
        tmpl,
        "running",
        "halted",
    ]
    # default templates cannot be destroyed, others can
    assert failure_of(x.VM.destroy, tmpl) == ["VM_IS_TEMPLATE", tmpl, "destroy"]
    mine = x.VM.clone(tmpl, "my-template")
    assert x.VM.get_is_default_template(mine) is False
    assert "default_template" not in x.VM.get_other_config(mine)
    x.VM.destroy(mine)


def test_provision_requires_a_template(x):
    vm = new_vm(x, "not-a-template")
    assert failure_of(x.VM.provision, vm) == ["ONLY_PROVISION_TEMPLATE"]


def test_control_domain_operations_are_refused(x):
    dom0 = x.host.get_control_domain(x.host.get_all()[0])
    assert x.VM.get_is_control_domain(dom0) is True
    assert failure_of(x.VM.hard_shutdown, dom0) == [
        "OPERATION_NOT_ALLOWED",
        "Operations on domain 0 are not allowed",
    ]


def test_memory_setters_need_a_halted_vm(x):
    vm = vm_in_state(x, "Running")
    assert failure_of(x.VM.set_memory_static_max, vm, str(GiB)) == [
        "VM_BAD_POWER_STATE",
        vm,
        "halted",
        "running",
    ]
    assert failure_of(x.VM.set_VCPUs_max, vm, "4") == [
        "VM_BAD_POWER_STATE",
        vm,
        "halted",
        "running",
    ]


def test_memory_constraints_are_checked(x):
    vm = new_vm(x, "mem")
    assert (
        failure_of(x.VM.set_memory_limits, vm, str(2 * GiB), str(GiB), str(GiB), str(GiB))[0]
        == "MEMORY_CONSTRAINT_VIOLATION"
    )


def test_start_beyond_host_memory(server):
    s = XenAPI.Session(server.url_for("small"))
    s.xenapi.login_with_password("admin", "pw", "2.21", "t")
    x = s.xenapi
    host = x.host.get_all()[0]
    free = int(x.host.compute_free_memory(host))
    assert free == 3 * GiB  # 4 GiB less the control domain's 1 GiB
    big = new_vm(x, "big", memory=8 * GiB)
    assert failure_of(x.VM.start, big, False, False) == [
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        str(8 * GiB),
        str(free),
    ]
    fits = new_vm(x, "fits", memory=2 * GiB)
    x.VM.start_on(fits, host, False, False)
    metrics = x.host_metrics.get_record(x.host.get_metrics(host))
    assert metrics["memory_free"] == str(GiB)
    second = new_vm(x, "second", memory=2 * GiB)
    assert failure_of(x.VM.start_on, second, host, False, False) == [
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        str(2 * GiB),
        str(GiB),
    ]
    x.VM.hard_shutdown(fits)
    assert x.host.compute_free_memory(host) == str(3 * GiB)
    close(s)


# ---------------------------------------------------------------- errors


def test_handle_invalid(x):
    bogus = "OpaqueRef:00000000-1111-2222-3333-444444444444"
    assert failure_of(x.VM.get_record, bogus) == ["HANDLE_INVALID", "VM", bogus]
    assert failure_of(x.VM.start, bogus, False, False) == ["HANDLE_INVALID", "VM", bogus]
    vm = new_vm(x, "wrong-class")
    assert failure_of(x.host.get_record, vm) == ["HANDLE_INVALID", "host", vm]
    assert failure_of(x.VM.start_on, vm, bogus, False, False) == ["HANDLE_INVALID", "host", bogus]


def test_uuid_invalid(x):
    uuid = "00000000-0000-0000-0000-000000000000"
    assert failure_of(x.VM.get_by_uuid, uuid) == ["UUID_INVALID", "VM", uuid]


def test_method_unknown(x):
    vm = new_vm(x, "unknown")
    assert failure_of(x.VM.frobnicate, vm) == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    assert failure_of(x.nosuchclass.get_all) == ["MESSAGE_METHOD_UNKNOWN", "nosuchclass.get_all"]


def test_parameter_count_mismatch_excludes_the_session(x):
    vm = new_vm(x, "count")
    assert failure_of(x.VM.start, vm) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "3", "1"]
    assert failure_of(x.VM.get_record) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "0",
    ]
    assert failure_of(x.VM.get_all, vm) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_all",
        "0",
        "1",
    ]
    assert failure_of(x.Async.VM.start, vm, False) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.start",
        "3",
        "2",
    ]


def test_wrong_parameter_type(x):
    vm = new_vm(x, "types")
    assert failure_of(x.VM.start, vm, "yes", False) == ["FIELD_TYPE_ERROR", "start_paused"]
    assert failure_of(x.VM.set_VCPUs_max, vm, "many") == ["FIELD_TYPE_ERROR", "value"]


def vm_create_record(x, **overrides):
    rec = {
        "name_label": "created",
        "name_description": "",
        "user_version": "1",
        "is_a_template": False,
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(GiB),
        "memory_dynamic_max": str(GiB),
        "memory_dynamic_min": str(GiB),
        "memory_static_min": str(GiB),
        "VCPUs_params": {},
        "VCPUs_max": "1",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "dc"},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }
    rec.update(overrides)
    return rec


def test_vm_create_validates_its_record(x):
    vm = x.VM.create(vm_create_record(x))
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["memory_static_max"] == str(GiB)
    assert rec["metrics"] != "OpaqueRef:NULL"
    incomplete = vm_create_record(x)
    del incomplete["memory_static_max"]
    assert failure_of(x.VM.create, incomplete) == ["FIELD_TYPE_ERROR", "memory_static_max"]
    assert failure_of(x.VM.create, vm_create_record(x, VCPUs_max="lots")) == [
        "FIELD_TYPE_ERROR",
        "VCPUs_max",
    ]
    assert failure_of(x.VM.create, vm_create_record(x, actions_after_crash="explode")) == [
        "FIELD_TYPE_ERROR",
        "actions_after_crash",
    ]


def test_disks_and_vifs_built_by_hand(x):
    vm = x.VM.create(vm_create_record(x, name_label="by-hand"))
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create(
        {
            "name_label": "d0",
            "name_description": "",
            "SR": sr,
            "virtual_size": str(5 * GiB),
            "type": "user",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        }
    )
    vbd = x.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
            "empty": False,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    net = x.network.get_all()[0]
    vif = x.VIF.create(
        {
            "device": "0",
            "network": net,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    assert x.VM.get_VBDs(vm) == [vbd] and x.VM.get_VIFs(vm) == [vif]
    assert vdi in x.SR.get_VDIs(sr)
    x.VM.start(vm, False, False)
    assert failure_of(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    x.VM.hard_shutdown(vm)
    x.VDI.destroy(vdi)
    x.VM.destroy(vm)
    assert failure_of(x.VIF.get_record, vif) == ["HANDLE_INVALID", "VIF", vif]


def test_map_duplicate_key(x):
    vm = new_vm(x, "maps")
    x.VM.add_to_other_config(vm, "k", "v")
    assert failure_of(x.VM.add_to_other_config, vm, "k", "w") == [
        "MAP_DUPLICATE_KEY",
        "VM",
        "other_config",
        x.VM.get_uuid(vm),
        "k",
    ]
    x.VM.remove_from_other_config(vm, "k")
    assert "k" not in x.VM.get_other_config(vm)


# ---------------------------------------------------------------- async and tasks


def test_async_call_returns_a_task(x):
    vm = new_vm(x, "async")
    task = x.Async.VM.start(vm, False, False)
    assert task.startswith("OpaqueRef:")
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["name_label"] == "Async.VM.start"
    assert x.task.get_result(task) == "<value></value>"
    assert x.VM.get_power_state(vm) == "Running"
    failed = wait_task(x, x.Async.VM.start(vm, False, False))
    assert failed["status"] == "failure"
    assert failed["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.task.destroy(task)
    assert failure_of(x.task.get_record, task) == ["HANDLE_INVALID", "task", task]


def test_async_clone_result_is_an_xmlrpc_value(x):
    task = x.Async.VM.clone(template(x), "async-clone")
    wait_task(x, task)
    result = x.task.get_result(task)
    (new_ref,), _ = xmlrpc.client.loads("<params><param>" + result + "</param></params>")
    assert x.VM.get_name_label(new_ref) == "async-clone"


def test_async_of_a_getter_is_refused(x):
    vm = new_vm(x, "no-async")
    assert failure_of(x.Async.VM.get_record, vm) == [
        "Fault",
        "No async mode for this operation (rpc: VM.get_record)",
    ]


def test_operations_on_one_vm_are_serialised(server, x):
    vm = vm_in_state(x, "Running")
    server.set_delay("VM.clean_shutdown", 0.5, pool="alpha", count=1)
    task = x.Async.VM.clean_shutdown(vm)
    deadline = time.monotonic() + 2
    while not x.VM.get_current_operations(vm):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert list(x.VM.get_current_operations(vm).values()) == ["clean_shutdown"]
    x.VM.start(vm, False, False)  # waits for the shutdown, then starts
    assert wait_task(x, task)["status"] == "success"
    assert x.VM.get_power_state(vm) == "Running"


def test_task_cancel_of_a_delayed_operation(server, x):
    vm = new_vm(x, "cancel")
    server.set_delay("VM.start", 0.5, pool="alpha", count=1)
    task = x.Async.VM.start(vm, False, False)
    x.task.cancel(task)
    rec = wait_task(x, task)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", task]
    assert x.VM.get_power_state(vm) == "Halted"


def test_injected_failure(server, x):
    vm = new_vm(x, "faulty")
    server.inject_failure("VM.start", ["VM_HVM_REQUIRED", vm], pool="alpha", ref=vm)
    assert failure_of(x.VM.start, vm, False, False) == ["VM_HVM_REQUIRED", vm]
    assert x.VM.get_power_state(vm) == "Halted"
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"


# ---------------------------------------------------------------- events


def test_event_from_returns_changes_since_token(x):
    first = event_from(x, ["vm"], "", 0.0)
    assert first["events"] and all(e["class"] == "vm" for e in first["events"])
    assert isinstance(first["valid_ref_counts"]["vm"], int)
    token = first["token"]
    started = time.monotonic()
    quiet = event_from(x, ["vm"], token, 0.3)
    assert quiet["events"] == [] and time.monotonic() - started >= 0.25
    vm = new_vm(x, "watched")
    changed = event_from(x, ["vm"], quiet["token"], 1.0)
    ops = {(e["operation"], e["ref"]) for e in changed["events"]}
    assert ("add", vm) in ops and ("mod", vm) in ops
    snap = [e for e in changed["events"] if e["ref"] == vm][-1]["snapshot"]
    assert snap["name_label"] == "watched" and snap["memory_static_max"] == str(2 * GiB)
    x.VM.destroy(vm)
    gone = event_from(x, [f"vm/{vm}"], changed["token"], 1.0)
    assert [(e["operation"], e["ref"]) for e in gone["events"]] == [("del", vm)]


def test_event_from_wakes_up_on_a_change(server, x):
    vm = new_vm(x, "wake")
    token = event_from(x, ["vm"], "", 0.0)["token"]
    session2 = XenAPI.Session(server.url_for("alpha"))
    session2.xenapi.login_with_password(USER, PASSWORD, "2.21", "t")
    timer = threading.Timer(0.2, session2.xenapi.VM.start, (vm, False, False))
    timer.start()
    started = time.monotonic()
    result = event_from(x, [f"vm/{vm}"], token, 5.0)
    timer.join()
    close(session2)
    assert time.monotonic() - started < 3
    assert any(
        e["snapshot"]["power_state"] == "Running"
        for e in result["events"]
        if e["operation"] == "mod"
    )


def test_event_from_sees_tasks(x):
    token = event_from(x, ["task"], "", 0.0)["token"]
    task = x.Async.VM.clone(template(x), "task-events")
    seen = {}
    deadline = time.monotonic() + 5
    while seen.get(task) != "success" and time.monotonic() < deadline:
        result = event_from(x, ["task"], token, 1.0)
        token = result["token"]
        for ev in result["events"]:
            if ev["operation"] != "del":
                seen[ev["ref"]] = ev["snapshot"]["status"]
    assert seen[task] == "success"


def test_event_from_survives_a_session_expiring_while_it_waits(server, session, x):
    token = event_from(x, ["vm"], "", 0.0)["token"]
    first = session.handle
    timer = threading.Timer(0.2, server.expire_sessions, kwargs={"pool": "alpha"})
    timer.start()
    started = time.monotonic()
    # the server answers SESSION_INVALID, the client logs in again and waits anew
    result = event_from(x, ["vm"], token, 0.6)
    timer.join()
    assert result["events"] == []
    assert time.monotonic() - started >= 0.7
    assert session.handle != first


def test_guest_side_power_change_is_seen(server, x):
    vm = vm_in_state(x, "Running")
    token = event_from(x, [f"vm/{vm}"], "", 0.0)["token"]
    server.set_vm_power_state(vm, "Halted", pool="alpha")
    result = event_from(x, [f"vm/{vm}"], token, 1.0)
    assert result["events"][-1]["snapshot"]["power_state"] == "Halted"
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"


def test_event_from_bad_token(x):
    assert failure_of(event_from, x, ["vm"], "garbage", 0.0) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE",
        "garbage",
    ]


# ---------------------------------------------------------------- transport


def test_https_with_self_signed_certificate(tmp_path):
    certfile, keyfile = make_self_signed_cert(tmp_path)
    ssl.create_default_context().load_cert_chain(certfile, keyfile)
    with XapiTestServer(pools=["tls:root:pw"], tls=(certfile, keyfile)) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        s = XenAPI.Session(srv.url, ignore_ssl=True)
        s.xenapi.login_with_password("root", "pw", "2.21", "t")
        assert len(s.xenapi.host.get_all()) == 1
        close(s)
        strict = XenAPI.Session(srv.url)
        with pytest.raises(ssl.SSLError):
            strict.xenapi.login_with_password("root", "pw", "2.21", "t")
        close(strict, logout=False)


def test_runs_as_a_subprocess():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.xapiserver",
            "--port",
            "0",
            "--pool",
            "sub:u:p:sub-a,sub-b",
            "--tls-self-signed",
            "--session-ttl",
            "600",
            "--image",
            "cirros:112",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("READY sub=https://127.0.0.1:"), line
        url = line.split("=", 1)[1]
        s = XenAPI.Session(url, ignore_ssl=True)
        s.xenapi.login_with_password("u", "p", "2.21", "t")
        names = sorted(h["name_label"] for h in s.xenapi.host.get_all_records().values())
        assert names == ["sub-a", "sub-b"]
        (image,) = s.xenapi.VDI.get_by_name_label("cirros")
        sr = s.xenapi.pool.get_default_SR(s.xenapi.pool.get_all()[0])
        assert (s.xenapi.VDI.get_SR(image), s.xenapi.VDI.get_virtual_size(image)) == (
            sr,
            str(112 * 1024**2),
        )
        assert s.xenapi.VDI.get_VBDs(image) == []
        old = s.handle
        assert s.testing.expire_sessions()["Value"] == "1"
        assert s.xenapi.pool.get_all()
        assert s.handle != old
        close(s)
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
        proc.stdout.close()
    assert code == 0


# ---------------------------------------------------------------- devices: VBD and VIF


def new_vdi(x, name="disk", size=GiB, sr=None, **extra):
    record = {
        "name_label": name,
        "name_description": "",
        "SR": sr or x.pool.get_default_SR(x.pool.get_all()[0]),
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
    }
    record.update(extra)
    return x.VDI.create(record)


def vbd_record(vm, vdi, userdevice, **extra):
    record = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    record.update(extra)
    return record


def vif_record(vm, device, mac="", network=None, x=None):
    return {
        "device": device,
        "network": network or x.network.get_all()[0],
        "VM": vm,
        "MAC": mac,
        "MTU": "1500",
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def test_vbd_create_checks_the_device_and_the_vdi(x):
    vm = new_vm(x, "vbd-checks")  # provisioned: userdevice 0 taken
    vdi = new_vdi(x)
    assert failure_of(x.VBD.create, vbd_record(vm, vdi, "bogus")) == ["INVALID_DEVICE", "bogus"]
    assert failure_of(x.VBD.create, vbd_record(vm, vdi, "xvda")) == [
        "DEVICE_ALREADY_EXISTS",
        "xvda",
    ]
    empty = vbd_record(vm, "OpaqueRef:NULL", "2", empty=True)
    assert failure_of(x.VBD.create, empty) == ["VBD_NOT_REMOVABLE_MEDIA", "in constructor"]
    read_only = new_vdi(x, "ro", read_only=True)
    assert failure_of(x.VBD.create, vbd_record(vm, read_only, "2")) == [
        "VDI_READONLY",
        read_only,
    ]
    vbd = x.VBD.create(vbd_record(vm, vdi, "autodetect"))
    assert x.VBD.get_userdevice(vbd) == "1"
    assert x.VM.get_allowed_VBD_devices(vm)[:2] == ["2", "3"]


def test_vbd_of_a_halted_vm_is_attached_when_it_starts(x):
    vm = new_vm(x, "cold-plug", memory=256 * 1024 * 1024)
    vbd = x.VBD.create(vbd_record(vm, new_vdi(x), "1"))
    assert x.VBD.get_currently_attached(vbd) is False
    assert x.VBD.get_allowed_operations(vbd) == ["attach"]
    assert failure_of(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(vbd) is True
    assert x.VBD.get_device(vbd) == "xvdb"
    x.VM.pause(vm)
    assert failure_of(x.VBD.unplug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]


def test_vbd_hotplug_on_a_running_vm(x):
    vm = vm_in_state(x, "Running")
    vdi = new_vdi(x)
    vbd = x.VBD.create(vbd_record(vm, vdi, "3"))
    assert x.VBD.get_currently_attached(vbd) is False  # created, not plugged
    assert set(x.VBD.get_allowed_operations(vbd)) == {"attach", "plug"}
    assert failure_of(x.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    x.VBD.plug(vbd)
    assert (x.VBD.get_currently_attached(vbd), x.VBD.get_device(vbd)) == (True, "xvdd")
    assert failure_of(x.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    reason = f"VBD '{x.VBD.get_uuid(vbd)}' still attached to '{x.VM.get_uuid(vm)}'"
    assert failure_of(x.VBD.destroy, vbd) == ["OPERATION_NOT_ALLOWED", reason]
    assert failure_of(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    x.VBD.unplug(vbd)
    assert x.VBD.get_currently_attached(vbd) is False
    x.VBD.destroy(vbd)
    assert vbd not in x.VM.get_VBDs(vm)
    fixed = x.VBD.create(vbd_record(vm, vdi, "4", unpluggable=False))
    x.VBD.plug(fixed)
    assert failure_of(x.VBD.unplug, fixed) == ["VBD_NOT_UNPLUGGABLE", fixed]


def test_a_vdi_attached_read_write_is_not_plugged_twice(x):
    one, two = vm_in_state(x, "Running"), vm_in_state(x, "Running")
    vdi = new_vdi(x, "shared-not")
    first = x.VBD.create(vbd_record(one, vdi, "1"))
    x.VBD.plug(first)
    second = x.VBD.create(vbd_record(two, vdi, "1"))
    assert failure_of(x.VBD.plug, second) == ["VDI_IN_USE", vdi]


def test_vif_create_checks_and_hotplug(x):
    vm = vm_in_state(x, "Running")
    assert failure_of(x.VIF.create, vif_record(vm, "eth0", x=x)) == ["INVALID_DEVICE", "eth0"]
    assert failure_of(x.VIF.create, vif_record(vm, "0", mac="zz:00", x=x)) == [
        "MAC_INVALID",
        "zz:00",
    ]
    vif = x.VIF.create(vif_record(vm, "0", mac="fa:16:3e:00:00:01", x=x))
    assert x.VIF.get_MAC(vif) == "fa:16:3e:00:00:01"
    assert failure_of(x.VIF.create, vif_record(vm, "0", x=x)) == ["DEVICE_ALREADY_EXISTS", "0"]
    assert x.VIF.get_currently_attached(vif) is False
    assert failure_of(x.VIF.unplug, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    x.VIF.plug(vif)
    assert failure_of(x.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    assert failure_of(x.VIF.destroy, vif) == [
        "OPERATION_NOT_ALLOWED",
        "VIF currently attached to a running VM",
    ]
    x.VIF.unplug(vif)
    x.VIF.destroy(vif)
    halted = new_vm(x, "vif-halted")
    cold = x.VIF.create(vif_record(halted, "1", x=x))
    assert x.VIF.get_MAC_autogenerated(cold) is True
    assert failure_of(x.VIF.plug, cold) == ["VM_BAD_POWER_STATE", halted, "running", "halted"]


def test_network_create_and_lookup(x):
    net = x.network.create(
        {"name_label": "tenant-net", "name_description": "", "other_config": {}, "MTU": "9000"}
    )
    assert x.network.get_by_name_label("tenant-net") == [net]
    assert x.network.get_MTU(net) == "9000" and x.network.get_bridge(net)


def test_host_iscsi_iqn_in_both_places(x):
    host = x.host.get_by_name_label("alpha-1")[0]
    iqn = x.host.get_iscsi_iqn(host)
    assert iqn.startswith("iqn.") and x.host.get_other_config(host)["iscsi_iqn"] == iqn
    x.host.set_iscsi_iqn(host, "iqn.2024-02.org.example:renamed")
    assert x.host.get_other_config(host)["iscsi_iqn"] == "iqn.2024-02.org.example:renamed"
    x.host.set_iscsi_iqn(host, iqn)


# ---------------------------------------------------------------- storage


def test_vdi_resize_clone_and_copy(x):
    vdi = new_vdi(x, "image", size=2 * GiB, other_config={"image": "cirros"})
    clone = x.VDI.clone(vdi)
    assert x.VDI.get_virtual_size(clone) == str(2 * GiB)
    assert x.VDI.get_other_config(clone) == {"image": "cirros"}
    x.VDI.resize(clone, str(5 * GiB))
    assert x.VDI.get_virtual_size(clone) == str(5 * GiB)
    assert failure_of(x.VDI.resize, clone, str(GiB)) == [
        "SR_BACKEND_FAILURE_79",
        "",
        "VDI Invalid size [opterr=shrinking not allowed]",
        "",
    ]
    sr = x.VDI.get_SR(vdi)
    assert failure_of(x.VDI.resize_online, clone, str(6 * GiB)) == [
        "SR_OPERATION_NOT_SUPPORTED",
        sr,
    ]
    copy = x.VDI.copy(vdi, sr)
    assert copy != vdi and x.VDI.get_SR(copy) == sr
    vm = vm_in_state(x, "Running")
    vbd = x.VBD.create(vbd_record(vm, clone, "1"))
    x.VBD.plug(vbd)
    assert failure_of(x.VDI.resize, clone, str(8 * GiB)) == ["VDI_IN_USE", clone, "resize"]


IQN = "iqn.2010-10.org.openstack:volume-1"
PORTAL = "198.51.100.7:3260"


def introduce(x, sr_type, device_config, uuid=""):
    sr = x.SR.introduce(uuid, "volume SR", "", sr_type, "", True, {})
    host = x.host.get_by_name_label("alpha-1")[0]
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": device_config, "other_config": {}})
    return sr, pbd, host


def test_iscsi_sr_introduced_plugged_scanned_and_forgotten(server, x):
    vdi_uuid = server.add_iscsi_lun(IQN, PORTAL, 1, 2 * GiB, pool="alpha")
    config = {"target": "198.51.100.7", "port": "3260", "targetIQN": IQN}
    sr, pbd, host = introduce(x, "iscsi", {**config, "targetIQN": IQN + "x"})
    assert x.SR.get_physical_size(sr) == "-1"
    assert failure_of(x.PBD.plug, pbd)[:1] == ["SR_BACKEND_FAILURE_68"]
    assert failure_of(x.SR.scan, sr) == ["SR_NO_PBDS", sr]
    assert failure_of(
        x.PBD.create, {"host": host, "SR": sr, "device_config": config, "other_config": {}}
    ) == ["PBD_EXISTS", sr, host, pbd]
    x.PBD.destroy(pbd)
    missing = x.PBD.create({"host": host, "SR": sr, "device_config": {}, "other_config": {}})
    assert failure_of(x.PBD.plug, missing) == [
        "SR_BACKEND_FAILURE_95",
        "",
        "The request is missing the target parameter",
        "",
    ]
    x.PBD.destroy(missing)
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": config, "other_config": {}})
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    (vdi,) = x.SR.get_VDIs(sr)
    record = x.VDI.get_record(vdi)
    assert record["uuid"] == vdi_uuid and record["virtual_size"] == str(2 * GiB)
    assert record["sm_config"]["LUNid"] == "1"
    assert failure_of(x.VDI.destroy, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    server.resize_iscsi_lun(IQN, 1, 3 * GiB, pool="alpha")
    x.SR.scan(sr)
    assert x.VDI.get_virtual_size(vdi) == str(3 * GiB)
    vm = new_vm(x, "volume-user", memory=256 * 1024 * 1024)
    x.VM.start_on(vm, host, False, False)
    vbd = x.VBD.create(vbd_record(vm, vdi, "1"))
    x.VBD.plug(vbd)
    assert failure_of(x.SR.forget, sr) == ["SR_HAS_PBD", sr]
    assert failure_of(x.PBD.unplug, pbd) == ["VDI_IN_USE", vdi]
    x.VBD.unplug(vbd)
    x.PBD.unplug(pbd)
    x.SR.forget(sr)
    for cls, ref in (("SR", sr), ("PBD", pbd), ("VDI", vdi), ("VBD", vbd)):
        assert failure_of(getattr(x, cls).get_record, ref) == ["HANDLE_INVALID", cls, ref]


def test_nfs_sr_finds_vdis_by_uuid(server, x):
    uuid = "0b9c7a43-6f0e-4a53-9c1a-6a1c5bde3f10"
    server.add_nfs_vdi("nfs.example.org", "/exports/vols", uuid, 4 * GiB, pool="alpha")
    sr, pbd, _ = introduce(x, "nfs", {"server": "nfs.example.org", "serverpath": "/elsewhere"})
    assert failure_of(x.PBD.plug, pbd)[:1] == ["SR_BACKEND_FAILURE_73"]
    x.PBD.destroy(pbd)
    sr, pbd, _ = introduce(x, "nfs", {"server": "nfs.example.org", "serverpath": "/exports/vols"})
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    assert x.VDI.get_virtual_size(x.VDI.get_by_uuid(uuid)) == str(4 * GiB)
    assert (
        failure_of(x.SR.introduce, x.SR.get_uuid(sr), "again", "", "nfs", "", True, {})[0]
        == "INTERNAL_ERROR"
    )


def test_provision_makes_and_grows_a_volume_on_the_array(server, x, capsys):
    url = server.url_for("alpha")
    assert provision.main(["--url", url, "vol-a", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    data = info["data"]
    assert (info["driver_volume_type"], data["target_lun"]) == ("iscsi", 1)
    assert data["target_iqn"].endswith(":volume-vol-a")
    host, _, port = data["target_portal"].rpartition(":")
    sr, pbd, _ = introduce(
        x, "iscsi", {"target": host, "port": port, "targetIQN": data["target_iqn"]}
    )
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    (vdi,) = x.SR.get_VDIs(sr)
    assert (x.VDI.get_sm_config(vdi)["LUNid"], x.VDI.get_virtual_size(vdi)) == ("1", str(GiB))
    assert provision.main(["--url", url, "--extend", "vol-a", "3"]) == 0
    assert capsys.readouterr().out == ""
    x.SR.scan(sr)
    assert x.VDI.get_virtual_size(vdi) == str(3 * GiB)
    assert provision.main(["--url", url, "--extend", "vol-b", "3"]) == 1
    assert "INVALID_VALUE" in capsys.readouterr().err
    x.PBD.unplug(pbd)
    x.SR.forget(sr)


def test_hypervisor_stops_and_deletes_an_instance_behind_its_back(server, x, capsys):
    vm = new_vm(x, "computed-inst-1")
    x.VM.set_other_config(vm, {"computed_uuid": "inst-1", "computed_host": "c1"})
    x.VM.start(vm, False, False)
    (disk,) = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]
    args = ["--url", server.url_for("alpha"), "--user", USER, "--password", PASSWORD]
    assert hypervisor.main([*args, "stop", "c1", "inst-1"]) == 0
    assert x.VM.get_power_state(vm) == "Halted"
    assert hypervisor.main([*args, "stop", "c2", "inst-1"]) == 1  # not c2's
    assert "no VM of instance" in capsys.readouterr().err
    x.VM.start(vm, False, False)
    assert hypervisor.main([*args, "delete", "c1", "inst-1"]) == 0
    assert x.VM.get_by_name_label("computed-inst-1") == []
    assert disk not in x.VDI.get_all()
    sessions = server.pool("alpha").sessions.values()
    assert "hypervisor" not in [s.originator for s in sessions]  # logged out each time


# ---------------------------------------------------------------- snapshots, consoles


def task_value(x, task):
    """The value a finished task's ``result`` carries."""
    record = wait_task(x, task)
    assert record["status"] == "success", record["error_info"]
    body = f"<methodResponse><params><param>{record['result']}</param></params></methodResponse>"
    return xmlrpc.client.loads(body)[0][0]


@pytest.mark.parametrize("state", ["Halted", "Running", "Paused", "Suspended"])
def test_snapshot_from_every_power_state(x, state):
    vm = vm_in_state(x, state)
    (disk,) = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]
    snapshot = task_value(x, x.Async.VM.snapshot(vm, f"snap-{state}"))
    record = x.VM.get_record(snapshot)
    assert (record["is_a_snapshot"], record["is_a_template"], record["snapshot_of"]) == (
        True,
        True,
        vm,
    )
    assert (record["name_label"], record["power_state"]) == (f"snap-{state}", "Halted")
    assert x.VM.get_snapshots(vm) == [snapshot]
    assert x.VM.get_power_state(vm) == state  # as it was
    (vbd,) = record["VBDs"]
    copy = x.VDI.get_record(x.VBD.get_VDI(vbd))
    assert (copy["is_a_snapshot"], copy["snapshot_of"]) == (True, disk)
    assert x.VDI.get_snapshots(disk) == [x.VBD.get_VDI(vbd)]
    assert "snapshot" in x.VM.get_allowed_operations(vm)
    assert failure_of(x.VM.start, snapshot, False, False) == ["VM_IS_SNAPSHOT", snapshot, "start"]
    assert x.VM.get_allowed_operations(snapshot) == ["copy", "clone", "export", "destroy"]
    x.VDI.destroy(x.VBD.get_VDI(vbd))
    x.VM.destroy(snapshot)  # a snapshot is a template that may go
    assert x.VM.get_snapshots(vm) == [] and x.VDI.get_snapshots(disk) == []


def test_snapshot_ignores_the_vdis_asked_and_takes_two_or_three_parameters(x):
    vm = new_vm(x, "two-disks")
    data = new_vdi(x, "data")
    x.VBD.create(vbd_record(vm, data, "1"))
    both = x.VM.snapshot(vm, "both")
    assert len(x.VM.get_VBDs(both)) == 2
    root_only = x.VM.snapshot(vm, "root only", [data])
    (vbd,) = x.VM.get_VBDs(root_only)
    assert x.VBD.get_userdevice(vbd) == "0"
    assert failure_of(x.VM.snapshot, vm)[:1] == ["MESSAGE_PARAMETER_COUNT_MISMATCH"]


def test_snapshot_task_advances_and_can_be_held(server, x):
    vm = new_vm(x, "held")
    hold = server.hold_progress("VM.snapshot", 0.6, pool="alpha")
    task = x.Async.VM.snapshot(vm, "held")
    assert hold.reached.wait(10)
    record = x.task.get_record(task)
    assert (record["status"], record["progress"]) == ("pending", 0.6)
    assert x.VM.get_current_operations(vm) == {task: "snapshot"}
    hold.release()
    assert x.VM.get_is_a_snapshot(task_value(x, task))
    assert x.task.get_progress(task) == 1.0


def test_snapshot_of_a_disk_whose_sr_cannot(server, x):
    vm = new_vm(x, "on-iscsi")
    iqn = "iqn.2024-01.org.example:snap"
    server.add_iscsi_lun(iqn, "198.51.100.30", 0, GiB, pool="alpha")
    sr, pbd, _ = introduce(x, "iscsi", {"target": "198.51.100.30", "targetIQN": iqn})
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    (lun,) = x.SR.get_VDIs(sr)
    x.VBD.create(vbd_record(vm, lun, "1"))
    task = x.Async.VM.snapshot(vm, "refused")
    record = wait_task(x, task)
    assert (record["status"], record["error_info"]) == (
        "failure",
        ["SR_OPERATION_NOT_SUPPORTED", sr],
    )
    assert x.VM.get_snapshots(vm) == []
    assert x.VM.get_is_a_snapshot(x.VM.snapshot(vm, "without it", [lun]))


def test_a_running_vm_has_a_vnc_console(x):
    vm = new_vm(x, "console")
    assert x.VM.get_consoles(vm) == []
    x.VM.start(vm, False, False)
    (console,) = x.VM.get_consoles(vm)
    record = x.console.get_record(console)
    host = x.host.get_record(x.VM.get_resident_on(vm))
    assert (record["protocol"], record["VM"]) == ("rfb", vm)
    assert record["location"] == f"https://{host['address']}/console?uuid={record['uuid']}"
    x.VM.pause(vm)
    assert x.VM.get_consoles(vm) == [console]
    x.VM.hard_shutdown(vm)
    assert x.VM.get_consoles(vm) == []
    assert failure_of(x.console.get_record, console) == ["HANDLE_INVALID", "console", console]


# ---------------------------------------------------------------- moving VMs


def two_hosts(x):
    return x.host.get_by_name_label("alpha-1")[0], x.host.get_by_name_label("alpha-2")[0]


def test_a_pool_of_several_hosts_shares_its_default_storage(x):
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    assert x.SR.get_shared(sr) is True
    hosts = {x.PBD.get_host(p) for p in x.SR.get_PBDs(sr) if x.PBD.get_currently_attached(p)}
    assert hosts == set(two_hosts(x))


def test_pool_migrate_moves_a_running_vm_as_a_task_with_progress(server, x):
    first, second = two_hosts(x)
    vm = new_vm(x, "migrant", memory=256 * 1024 * 1024)
    x.VM.start_on(vm, first, False, False)
    domid = x.VM.get_domid(vm)
    task = x.Async.VM.pool_migrate(vm, second, {"live": "true"})
    record = wait_task(x, task)
    assert (record["status"], record["progress"]) == ("success", 1.0)
    assert x.VM.get_resident_on(vm) == second
    assert x.VM.get_domid(vm) != domid
    assert vm in x.host.get_resident_VMs(second) and vm not in x.host.get_resident_VMs(first)
    console = x.VM.get_consoles(vm)[0]
    assert x.host.get_address(second) in x.console.get_location(console)
    reason = "Host is the same as the VM's resident_on"
    assert failure_of(x.VM.pool_migrate, vm, second, {}) == ["OPERATION_NOT_ALLOWED", reason]
    x.VM.hard_shutdown(vm)
    assert failure_of(x.VM.pool_migrate, vm, first, {}) == [
        "VM_BAD_POWER_STATE",
        vm,
        "running",
        "halted",
    ]
    x.VM.destroy(vm)


def test_a_cancelled_pool_migrate_leaves_the_vm_where_it_ran(server, x):
    first, second = two_hosts(x)
    vm = new_vm(x, "stays", memory=256 * 1024 * 1024)
    x.VM.start_on(vm, first, False, False)
    hold = server.hold_progress("VM.pool_migrate", 0.4, pool="alpha")
    task = x.Async.VM.pool_migrate(vm, second, {"live": "true"})
    assert hold.reached.wait(5)
    assert x.VM.get_current_operations(vm) != {}
    x.task.cancel(task)
    hold.release()
    record = wait_task(x, task)
    assert (record["status"], record["error_info"]) == ("cancelled", ["TASK_CANCELLED", task])
    assert x.VM.get_resident_on(vm) == first
    assert x.VM.get_power_state(vm) == "Running"
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)


def test_pool_migrate_needs_the_vms_storage_and_memory_on_the_destination(server, x):
    first, second = two_hosts(x)
    vm = new_vm(x, "heavy", memory=40 * GiB)
    x.VM.start_on(vm, first, False, False)
    blocker = new_vm(x, "blocker", memory=30 * GiB)
    x.VM.start_on(blocker, second, False, False)
    free = x.host.compute_free_memory(second)
    assert failure_of(x.VM.pool_migrate, vm, second, {}) == [
        "HOST_NOT_ENOUGH_FREE_MEMORY",
        str(40 * GiB),
        free,
    ]
    x.VM.hard_shutdown(blocker)
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    (pbd,) = [p for p in x.SR.get_PBDs(sr) if x.PBD.get_host(p) == second]
    state = server.pool("alpha")
    state.update("PBD", pbd, currently_attached=False)
    try:
        assert failure_of(x.VM.pool_migrate, vm, second, {}) == ["VM_REQUIRES_SR", vm, sr]
    finally:
        state.update("PBD", pbd, currently_attached=True)
    for each in (vm, blocker):
        x.VM.hard_shutdown(each) if x.VM.get_power_state(each) != "Halted" else None
        x.VM.destroy(each)


def test_a_dead_host_takes_no_vm_and_its_vms_are_reset_only_then(server, session, x):
    first, second = two_hosts(x)
    vm = new_vm(x, "orphan", memory=256 * 1024 * 1024)
    x.VM.start_on(vm, second, False, False)
    assert failure_of(x.VM.power_state_reset, vm) == ["HOST_IS_LIVE", second]
    session.testing.set_host_live("alpha-2", False)  # the testing namespace, no session
    try:
        assert x.host_metrics.get_live(x.host.get_metrics(second)) is False
        assert x.host.get_enabled(second) is False
        assert x.VM.get_power_state(vm) == "Running"  # until someone resets it
        other = new_vm(x, "elsewhere", memory=256 * 1024 * 1024)
        assert failure_of(x.VM.start_on, other, second, False, False) == ["HOST_OFFLINE", second]
        x.VM.start(other, False, False)
        assert x.VM.get_resident_on(other) == first
        x.VM.power_state_reset(vm)
        assert (x.VM.get_power_state(vm), x.VM.get_resident_on(vm)) == ("Halted", "OpaqueRef:NULL")
        x.VM.start_on(vm, first, False, False)
        assert failure_of(x.VM.power_state_reset, vm) == ["DOMAIN_EXISTS", vm]
    finally:
        server.set_host_live("alpha-2", True, pool="alpha")
    for each in (vm, other):
        x.VM.hard_shutdown(each)
        x.VM.destroy(each)
