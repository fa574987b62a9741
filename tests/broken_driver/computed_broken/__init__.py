"""Drivers with deliberate contract violations, for testing the conformance suite.

``driver`` breaks three semantics at once; each of ``variants`` breaks one.
"""

__all__ = ["driver", "variants"]
