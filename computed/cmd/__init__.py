"""Console entry points: ``computed`` (the worker) and ``computedctl`` (operators)."""

from __future__ import annotations

import warnings

__all__: list[str] = []

# futurist imports eventlet when it is installed, and eventlet warns about
# itself on import; the project never uses it.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
