"""Model adapters, registered by name (see :mod:`adapters.base`)."""

from adapters.base import Adapter, Capabilities, create, register, registered

__all__ = ["Adapter", "Capabilities", "create", "register", "registered"]
