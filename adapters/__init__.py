"""Model adapters, registered by name (see :mod:`bench.adapters.base`)."""

from bench.adapters.base import Adapter, Capabilities, create, register, registered

__all__ = ["Adapter", "Capabilities", "create", "register", "registered"]
