"""A driver with three deliberate contract violations, for testing the conformance suite."""

__all__ = ["driver"]
