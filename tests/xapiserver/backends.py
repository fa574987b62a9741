"""The storage behind the pool's SRs: iSCSI targets and NFS exports.

xapi hands SR operations to its storage managers, which talk to real
targets; the test server keeps what those targets hold here, for
:mod:`.storage` to attach and scan. Tests add LUNs and files through
``XapiTestServer.add_iscsi_lun`` / ``add_nfs_vdi`` (or ``testing.*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .wire import new_uuid


@dataclass
class Lun:
    size: int
    vdi_uuid: str = field(default_factory=new_uuid)
    scsi_id: str = field(default_factory=lambda: "36" + new_uuid().replace("-", "")[:30])


@dataclass
class IscsiTarget:
    iqn: str
    host: str
    port: int = 3260
    chap: tuple[str, str] | None = None
    luns: dict[str, Lun] = field(default_factory=dict)


@dataclass
class Backends:
    """The storage the pool's SRs stand for: iSCSI targets and NFS exports."""

    targets: dict[str, IscsiTarget] = field(default_factory=dict)
    #: (server, path) -> {vdi uuid: size}
    exports: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def add_lun(
        self, iqn: str, portal: str, lun: int, size: int, chap: tuple[str, str] | None = None
    ) -> Lun:
        host, _, port = portal.partition(":")
        target = self.targets.setdefault(iqn, IscsiTarget(iqn, host, int(port or 3260), chap))
        target.luns[str(lun)] = Lun(size)
        return target.luns[str(lun)]
