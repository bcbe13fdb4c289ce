"""Image families with deterministic splits, reachable by name (DESIGN §5)."""

from synthetic.registry import FAMILY_NAMES, get_family

__all__ = ["FAMILY_NAMES", "get_family"]
