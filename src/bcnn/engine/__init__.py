"""CPU inference engines that compute exactly what the IR defines."""

from bcnn.engine.reference import run_reference

__all__ = ["run_reference"]
