"""An administrator renames an instance's VM: the driver still finds it, by other_config."""

from __future__ import annotations

from typing import Any

import pytest

from computed import exception
from computed.objects import PowerState
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import HOST
from tests.xapiserver import XapiTestServer

pytest.importorskip("XenAPI")

from drivers.xenapi.driver import XenAPIDriver  # noqa: E402
from tests.functional.xenapi.test_xenapi_driver import vm_of  # noqa: E402
from tests.functional.xenapi.test_xenapi_rescue import image_spec, rescue_vm  # noqa: E402

pytestmark = pytest.mark.xenapi


def test_a_renamed_vm_is_still_its_instance(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    xapi.VM.set_name_label(vm, "web server (do not touch)")
    assert [i.uuid for i in driver.list_instances(HOST)] == [spec.uuid]
    assert driver.get_info(HOST, spec.uuid).power_state == PowerState.RUNNING
    assert driver.power_off(HOST, spec.uuid).power_state == PowerState.STOPPED
    # A repeated spawn finds it too, rather than making a second VM.
    assert driver.spawn(HOST, spec).power_state == PowerState.STOPPED
    assert [i.uuid for i in driver.list_instances(HOST)] == [spec.uuid]
    driver.destroy(HOST, spec.uuid)
    assert driver.list_instances(HOST) == []
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(HOST, spec.uuid)


def test_a_vm_named_like_an_instance_is_not_that_instance(driver: XenAPIDriver, xapi: Any) -> None:
    """The name is a label: another VM given an instance's name is not the instance."""
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)  # xapi clones halted VMs only
    vm = vm_of(xapi, spec.uuid)
    xapi.VM.set_name_label(vm, "renamed")
    impostor = xapi.VM.clone(vm, f"computed-{spec.uuid}")
    other = dict(xapi.VM.get_other_config(impostor))
    other.pop("computed_uuid")
    xapi.VM.set_other_config(impostor, other)
    driver.destroy(HOST, spec.uuid)
    assert xapi.VM.get_name_label(impostor) == f"computed-{spec.uuid}"
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(HOST, spec.uuid)


def test_a_renamed_rescue_vm_is_still_found(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    xapi.VM.set_name_label(rescue_vm(xapi, spec.uuid), "rescue of the web server")
    assert driver.get_graphical_console(HOST, spec.uuid).protocol in ("vnc", "rdp")
    assert driver.unrescue(HOST, spec.uuid).power_state == PowerState.RUNNING
    assert [r for r in xapi.VM.get_all_records().values() if "rescue" in r["name_label"]] == []
