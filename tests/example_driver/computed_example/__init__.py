"""An out-of-tree computed driver: a toy in-memory hypervisor."""

__all__ = ["driver"]
