"""Record layouts of the xapi classes the test server models.

Field names, and which VM/VDI/VBD fields ``<class>.create`` requires, follow
ocaml/idl/datamodel_vm.ml and the other datamodel files of xen-api: a
constructor field without a default value must be present in the struct.
Integers are int64 (strings on the wire); see wire.py.
"""

from __future__ import annotations

from typing import Any

from .wire import EPOCH, NULL_REF

GiB = 1024**3
MiB = 1024**2

# Classes that produce events and answer the generic accessors. Event class
# names are these, lower-cased (xapi lower-cases them in event records).
CLASSES = (
    "pool",
    "host",
    "host_metrics",
    "host_cpu",
    "VM",
    "VM_metrics",
    "VM_guest_metrics",
    "SR",
    "PBD",
    "VDI",
    "VBD",
    "network",
    "VIF",
    "task",
    "console",
)

VM_ACTIONS_NORMAL = "enum:destroy|restart"
VM_ACTIONS_CRASH = (
    "enum:destroy|coredump_and_destroy|restart|coredump_and_restart|preserve|rename_restart"
)
VDI_TYPES = "enum:system|user|ephemeral|suspend|crashdump|ha_statefile|metadata|redo_log|rrd|pvs_cache|cbt_metadata"


def vm_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "allowed_operations": [],
        "current_operations": {},
        "power_state": "Halted",
        "name_label": "",
        "name_description": "",
        "user_version": 1,
        "is_a_template": False,
        "is_default_template": False,
        "suspend_VDI": NULL_REF,
        "resident_on": NULL_REF,
        "scheduled_to_be_resident_on": NULL_REF,
        "affinity": NULL_REF,
        "memory_overhead": 0,
        "memory_target": 0,
        "memory_static_max": 256 * MiB,
        "memory_dynamic_max": 256 * MiB,
        "memory_dynamic_min": 256 * MiB,
        "memory_static_min": 256 * MiB,
        "VCPUs_params": {},
        "VCPUs_max": 1,
        "VCPUs_at_startup": 1,
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "consoles": [],
        "VIFs": [],
        "VBDs": [],
        "VUSBs": [],
        "crash_dumps": [],
        "VTPMs": [],
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": {},
        "HVM_shadow_multiplier": 1.0,
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "domid": -1,
        "domarch": "",
        "last_boot_CPU_flags": {},
        "is_control_domain": False,
        "metrics": NULL_REF,
        "guest_metrics": NULL_REF,
        "last_booted_record": "",
        "recommendations": "",
        "xenstore_data": {},
        "ha_always_run": False,
        "ha_restart_priority": "",
        "is_a_snapshot": False,
        "snapshot_of": NULL_REF,
        "snapshots": [],
        "snapshot_time": EPOCH,
        "transportable_snapshot_id": "",
        "blobs": {},
        "tags": [],
        "blocked_operations": {},
        "snapshot_info": {},
        "snapshot_metadata": "",
        "parent": NULL_REF,
        "children": [],
        "bios_strings": {},
        "protection_policy": NULL_REF,
        "is_snapshot_from_vmpp": False,
        "snapshot_schedule": NULL_REF,
        "is_vmss_snapshot": False,
        "appliance": NULL_REF,
        "start_delay": 0,
        "shutdown_delay": 0,
        "order": 0,
        "VGPUs": [],
        "attached_PCIs": [],
        "suspend_SR": NULL_REF,
        "version": 0,
        "generation_id": "",
        "hardware_platform_version": 0,
        "has_vendor_device": False,
        "requires_reboot": False,
        "reference_label": "",
        "domain_type": "hvm",
        "NVRAM": {},
    }


# Constructor fields of VM without a default value in the datamodel.
VM_CREATE_REQUIRED = (
    "name_label",
    "name_description",
    "user_version",
    "is_a_template",
    "affinity",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
)
# Further VM fields a constructor struct may carry (they have defaults).
VM_CREATE_OPTIONAL = (
    "memory_target",
    "HVM_shadow_multiplier",
    "xenstore_data",
    "ha_always_run",
    "ha_restart_priority",
    "tags",
    "blocked_operations",
    "protection_policy",
    "is_snapshot_from_vmpp",
    "appliance",
    "start_delay",
    "shutdown_delay",
    "order",
    "suspend_SR",
    "version",
    "generation_id",
    "hardware_platform_version",
    "has_vendor_device",
    "reference_label",
    "domain_type",
    "NVRAM",
    "last_booted_record",
    "bios_strings",
    "snapshot_schedule",
    "is_vmss_snapshot",
)
VM_FIELD_KINDS = {
    "actions_after_shutdown": VM_ACTIONS_NORMAL,
    "actions_after_reboot": VM_ACTIONS_NORMAL,
    "actions_after_crash": VM_ACTIONS_CRASH,
    "domain_type": "enum:hvm|pv|pv_in_pvh|pvh|unspecified",
}
# Plain setters (set_<field>) xapi generates for RW VM fields.
VM_SIMPLE_SETTERS = (
    "name_label",
    "name_description",
    "user_version",
    "affinity",
    "VCPUs_params",
    "actions_after_shutdown",
    "actions_after_reboot",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_params",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
    "xenstore_data",
    "tags",
    "blocked_operations",
    "suspend_SR",
    "hardware_platform_version",
    "start_delay",
    "shutdown_delay",
    "order",
    "actions_after_crash",
)


def vm_metrics_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "memory_actual": 0,
        "VCPUs_number": 0,
        "VCPUs_utilisation": {},
        "VCPUs_CPU": {},
        "VCPUs_params": {},
        "VCPUs_flags": {},
        "state": [],
        "start_time": EPOCH,
        "install_time": EPOCH,
        "last_updated": EPOCH,
        "other_config": {},
        "hvm": False,
        "nested_virt": False,
        "nomigrate": False,
        "current_domain_type": "unspecified",
    }


def vdi_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "",
        "allowed_operations": [],
        "current_operations": {},
        "SR": NULL_REF,
        "VBDs": [],
        "crash_dumps": [],
        "virtual_size": 0,
        "physical_utilisation": 0,
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "storage_lock": False,
        "location": "",
        "managed": True,
        "missing": False,
        "parent": NULL_REF,
        "xenstore_data": {},
        "sm_config": {},
        "is_a_snapshot": False,
        "snapshot_of": NULL_REF,
        "snapshots": [],
        "snapshot_time": EPOCH,
        "tags": [],
        "allow_caching": False,
        "on_boot": "persist",
        "metadata_of_pool": NULL_REF,
        "metadata_latest": False,
        "is_tools_iso": False,
        "cbt_enabled": False,
    }


VDI_CREATE_REQUIRED = (
    "name_label",
    "name_description",
    "SR",
    "virtual_size",
    "type",
    "sharable",
    "read_only",
    "other_config",
)
VDI_CREATE_OPTIONAL = ("xenstore_data", "sm_config", "tags")
VDI_FIELD_KINDS = {"type": VDI_TYPES, "SR": "ref"}


def vbd_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "allowed_operations": [],
        "current_operations": {},
        "VM": NULL_REF,
        "VDI": NULL_REF,
        "device": "",
        "userdevice": "",
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "storage_lock": False,
        "empty": False,
        "other_config": {},
        "currently_attached": False,
        "status_code": 0,
        "status_detail": "",
        "runtime_properties": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "qos_supported_algorithms": [],
        "metrics": NULL_REF,
    }


VBD_CREATE_REQUIRED = (
    "VM",
    "VDI",
    "userdevice",
    "bootable",
    "mode",
    "type",
    "empty",
    "other_config",
    "qos_algorithm_type",
    "qos_algorithm_params",
)
VBD_CREATE_OPTIONAL = ("unpluggable", "device", "currently_attached")
VBD_FIELD_KINDS = {"mode": "enum:RO|RW", "type": "enum:CD|Disk|Floppy", "VM": "ref", "VDI": "ref"}


def vif_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "allowed_operations": [],
        "current_operations": {},
        "device": "",
        "network": NULL_REF,
        "VM": NULL_REF,
        "MAC": "",
        "MTU": 1500,
        "other_config": {},
        "currently_attached": False,
        "status_code": 0,
        "status_detail": "",
        "runtime_properties": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "qos_supported_algorithms": [],
        "metrics": NULL_REF,
        "MAC_autogenerated": False,
        "locking_mode": "network_default",
        "ipv4_allowed": [],
        "ipv6_allowed": [],
    }


VIF_CREATE_REQUIRED = (
    "device",
    "network",
    "VM",
    "MAC",
    "MTU",
    "other_config",
    "qos_algorithm_type",
    "qos_algorithm_params",
)
VIF_CREATE_OPTIONAL = ("locking_mode", "ipv4_allowed", "ipv6_allowed")
VIF_FIELD_KINDS = {
    "network": "ref",
    "VM": "ref",
    "locking_mode": "enum:network_default|locked|unlocked|disabled",
}


def task_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "",
        "allowed_operations": [],
        "current_operations": {},
        "created": EPOCH,
        "finished": EPOCH,
        "status": "pending",
        "resident_on": NULL_REF,
        "progress": 0.0,
        "type": "<none/>",
        "result": "",
        "error_info": [],
        "other_config": {},
        "subtask_of": NULL_REF,
        "subtasks": [],
        "backtrace": "()",
    }


def console_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "protocol": "rfb",
        "location": "",
        "VM": NULL_REF,
        "other_config": {},
    }


def host_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "Default install",
        "memory_overhead": 0,
        "allowed_operations": [],
        "current_operations": {},
        "API_version_major": 2,
        "API_version_minor": 21,
        "API_version_vendor": "XenSource",
        "API_version_vendor_implementation": {},
        "enabled": True,
        "software_version": {
            "product_version": "8.2.1",
            "product_version_text": "8.2",
            "product_brand": "XCP-ng",
            "platform_name": "XCP",
            "platform_version": "3.2.1",
            "xapi": "1.20",
            "xen": "4.13.5",
            "hostname": "",
            "date": "2024-01-01",
        },
        "other_config": {},
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64"],
        "cpu_configuration": {},
        "sched_policy": "credit",
        "supported_bootloaders": ["pygrub", "eliloader"],
        "resident_VMs": [],
        "logging": {},
        "PIFs": [],
        "suspend_image_sr": NULL_REF,
        "crash_dump_sr": NULL_REF,
        "crashdumps": [],
        "patches": [],
        "updates": [],
        "PBDs": [],
        "host_CPUs": [],
        "cpu_info": {},
        "hostname": "",
        "address": "",
        "metrics": NULL_REF,
        "license_params": {},
        "ha_statefiles": [],
        "ha_network_peers": [],
        "blobs": {},
        "tags": [],
        "external_auth_type": "",
        "external_auth_service_name": "",
        "external_auth_configuration": {},
        "edition": "xcp-ng",
        "license_server": {},
        "bios_strings": {},
        "power_on_mode": "",
        "power_on_config": {},
        "local_cache_sr": NULL_REF,
        "chipset_info": {},
        "PCIs": [],
        "PGPUs": [],
        "PUSBs": [],
        "ssl_legacy": False,
        "guest_VCPUs_params": {},
        "display": "enabled",
        "virtual_hardware_platform_versions": [0, 1, 2],
        "control_domain": NULL_REF,
        "updates_requiring_reboot": [],
        "features": [],
        "iscsi_iqn": "",
        "multipathing": False,
        "uefi_certificates": "",
        "certificates": [],
        "editions": ["xcp-ng"],
    }


def host_metrics_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "memory_total": 0,
        "memory_free": 0,
        "live": True,
        "last_updated": EPOCH,
        "other_config": {},
    }


def host_cpu_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "host": NULL_REF,
        "number": 0,
        "vendor": "GenuineIntel",
        "speed": 2400,
        "modelname": "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz",
        "family": 6,
        "model": 63,
        "stepping": "2",
        "flags": "fpu de tsc msr pae",
        "features": "",
        "utilisation": 0.0,
        "other_config": {},
    }


def pool_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "",
        "master": NULL_REF,
        "default_SR": NULL_REF,
        "suspend_image_SR": NULL_REF,
        "crash_dump_SR": NULL_REF,
        "other_config": {},
        "ha_enabled": False,
        "ha_configuration": {},
        "ha_statefiles": [],
        "ha_host_failures_to_tolerate": 0,
        "ha_plan_exists_for": 0,
        "ha_allow_overcommit": False,
        "ha_overcommitted": False,
        "blobs": {},
        "tags": [],
        "gui_config": {},
        "health_check_config": {},
        "wlb_url": "",
        "wlb_username": "",
        "wlb_enabled": False,
        "wlb_verify_cert": False,
        "redo_log_enabled": False,
        "redo_log_vdi": NULL_REF,
        "vswitch_controller": "",
        "restrictions": {},
        "metadata_VDIs": [],
        "ha_cluster_stack": "xhad",
        "allowed_operations": [],
        "current_operations": {},
        "guest_agent_config": {},
        "cpu_info": {},
        "policy_no_vendor_device": False,
        "live_patching_disabled": False,
        "igmp_snooping_enabled": False,
        "uefi_certificates": "",
        "is_psr_pending": False,
        "tls_verification_enabled": False,
        "repositories": [],
        "client_certificate_auth_enabled": False,
        "client_certificate_auth_name": "",
        "repository_proxy_url": "",
        "repository_proxy_username": "",
        "migration_compression": False,
        "coordinator_bias": True,
    }


def sr_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "",
        "allowed_operations": [],
        "current_operations": {},
        "VDIs": [],
        "PBDs": [],
        "virtual_allocation": 0,
        "physical_utilisation": 0,
        "physical_size": 0,
        "type": "lvm",
        "content_type": "user",
        "shared": False,
        "other_config": {},
        "tags": [],
        "sm_config": {},
        "blobs": {},
        "local_cache_enabled": False,
        "introduced_by": NULL_REF,
        "clustered": False,
        "is_tools_sr": False,
    }


def pbd_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "host": NULL_REF,
        "SR": NULL_REF,
        "device_config": {},
        "currently_attached": False,
        "other_config": {},
    }


def network_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "name_label": "",
        "name_description": "",
        "allowed_operations": [],
        "current_operations": {},
        "VIFs": [],
        "PIFs": [],
        "MTU": 1500,
        "other_config": {},
        "bridge": "",
        "managed": True,
        "blobs": {},
        "tags": [],
        "default_locking_mode": "unlocked",
        "assigned_ips": {},
        "purpose": [],
    }


def guest_metrics_record() -> dict[str, Any]:
    return {
        "uuid": "",
        "os_version": {},
        "PV_drivers_version": {},
        "PV_drivers_up_to_date": False,
        "memory": {},
        "disks": {},
        "networks": {},
        "other": {},
        "last_updated": EPOCH,
        "other_config": {},
        "live": True,
        "can_use_hotplug_vbd": "unspecified",
        "can_use_hotplug_vif": "unspecified",
        "PV_drivers_detected": False,
    }


DEFAULTS = {
    "VM": vm_record,
    "VM_metrics": vm_metrics_record,
    "VDI": vdi_record,
    "VBD": vbd_record,
    "VIF": vif_record,
    "task": task_record,
    "host": host_record,
    "host_metrics": host_metrics_record,
    "host_cpu": host_cpu_record,
    "pool": pool_record,
    "SR": sr_record,
    "PBD": pbd_record,
    "network": network_record,
    "VM_guest_metrics": guest_metrics_record,
    "console": console_record,
}

# Plain setters other classes offer (set_<field>), beyond VM's.
SIMPLE_SETTERS: dict[str, tuple[str, ...]] = {
    "VM": VM_SIMPLE_SETTERS,
    "VDI": (
        "name_label",
        "name_description",
        "other_config",
        "xenstore_data",
        "sm_config",
        "tags",
        "on_boot",
        "allow_caching",
    ),
    "VBD": (
        "userdevice",
        "bootable",
        "mode",
        "type",
        "unpluggable",
        "other_config",
        "qos_algorithm_type",
        "qos_algorithm_params",
    ),
    "VIF": ("other_config", "qos_algorithm_type", "qos_algorithm_params", "locking_mode"),
    "PBD": ("other_config",),
    "SR": ("name_label", "name_description", "other_config", "tags", "sm_config"),
    "network": ("name_label", "name_description", "other_config", "tags", "MTU"),
    "host": ("name_label", "name_description", "other_config", "tags", "logging"),
    "pool": (
        "name_label",
        "name_description",
        "other_config",
        "tags",
        "default_SR",
        "suspend_image_SR",
        "crash_dump_SR",
    ),
    "task": ("other_config", "status", "progress", "result", "error_info"),
    "VM_metrics": ("other_config",),
    "host_metrics": ("other_config",),
    "host_cpu": ("other_config",),
    "VM_guest_metrics": ("other_config",),
    "console": ("other_config",),
}
FIELD_KINDS: dict[str, dict[str, str]] = {
    "VM": VM_FIELD_KINDS,
    "VDI": VDI_FIELD_KINDS,
    "VBD": VBD_FIELD_KINDS,
    "VIF": VIF_FIELD_KINDS,
    "PBD": {"host": "ref", "SR": "ref"},
    "task": {"status": "enum:pending|success|failure|cancelling|cancelled"},
}
