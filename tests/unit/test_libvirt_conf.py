"""The [libvirt] options: which URI serves which host."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg

from drivers.libvirt import conf as libvirt_conf


def make(*args: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    libvirt_conf.register_opts(conf)
    conf(list(args), default_config_files=[])
    return conf


def test_defaults() -> None:
    conf = make()
    assert conf.libvirt.connection_uri == "qemu:///system"
    assert conf.libvirt.host_uris == {}
    assert conf.libvirt.shutdown_timeout == 0.0
    assert conf.libvirt.shutdown_retry_interval == 10.0
    assert libvirt_conf.uri_for(conf, "any") == "qemu:///system"


def test_host_uris_from_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "computed.conf"
    path.write_text(
        "[libvirt]\n"
        "connection_uri = qemu+tls://default/system\n"
        "host_uris = kvm1:qemu+ssh://root@kvm1:2222/system,"
        "kvm2:test+unix:///default?socket=/run/x/libvirt-sock\n"
    )
    conf = make("--config-file", str(path))
    assert libvirt_conf.uri_for(conf, "kvm1") == "qemu+ssh://root@kvm1:2222/system"
    assert libvirt_conf.uri_for(conf, "kvm2") == "test+unix:///default?socket=/run/x/libvirt-sock"
    assert libvirt_conf.uri_for(conf, "kvm3") == "qemu+tls://default/system"


def test_overrides_stay_with_their_config() -> None:
    first, second = make(), make()
    first.set_override("connection_uri", "test:///default", "libvirt")
    assert second.libvirt.connection_uri == "qemu:///system"


def test_list_opts_names_the_group() -> None:
    [(group, opts)] = libvirt_conf.list_opts()
    assert group.name == "libvirt"
    assert {o.dest for o in opts} == {
        "connection_uri",
        "host_uris",
        "shutdown_timeout",
        "shutdown_retry_interval",
        "virt_type",
        "storage_pool",
        "nfs_mount_point_base",
        "connector_ips",
        "iscsi_initiators",
        "console_listen",
        "serial_port_range",
        "graphics_port_range",
        "graphics_type",
    }


@pytest.mark.parametrize("text", ["10000", "1:2:3", "a:b", "10000-20000"])
def test_a_serial_port_range_is_low_colon_high(text: str) -> None:
    conf = make()
    with pytest.raises(ValueError):
        conf.set_override("serial_port_range", text, "libvirt")
