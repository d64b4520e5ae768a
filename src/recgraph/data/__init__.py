"""Data: the SQL store, imports and exports, :class:`Interactions`, splits, synthetic data."""

from recgraph.data.interactions import IdMap, Interactions, Kind, ValueKind

__all__ = ["IdMap", "Interactions", "Kind", "ValueKind"]
