"""The Hyper-V driver: ``drivers.hyperv.driver.HyperVDriver``, entry point ``hyperv``.

It manages Windows Hyper-V hosts remotely over WinRM with pywinrm, running a
small fixed vocabulary of PowerShell scripts (:mod:`~drivers.hyperv.powershell`).
The package itself imports nothing, so that :mod:`~drivers.hyperv.conf` loads
without pywinrm; the other modules need it (``pip install pywinrm``).
"""

from __future__ import annotations

__all__: list[str] = []
