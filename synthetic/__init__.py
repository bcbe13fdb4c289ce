"""Image families with deterministic splits, reachable by name (docs/design.md §5)."""

from synthetic.registry import FAMILY_NAMES, family_parameters, get_family

__all__ = ["FAMILY_NAMES", "family_parameters", "get_family"]
