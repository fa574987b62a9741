"""The libvirt driver: ``drivers.libvirt.driver.LibvirtDriver``, entry point ``libvirt``.

The package itself imports nothing, so that :mod:`~drivers.libvirt.conf` and
:mod:`~drivers.libvirt.config` load without libvirt-python; the other modules
need it (``pip install 'computed[libvirt]'``).
"""

from __future__ import annotations

__all__: list[str] = []
