"""recgraph: who to follow and what to read, from graph data alone.

The parts live in sub-packages named after what they do: ``data`` (store,
imports, :class:`~recgraph.data.Interactions`, splits), ``retrieval`` (stage-1
candidate generators), ``evaluation`` (full-ranking metrics), ``cli``.
"""

from recgraph.data.interactions import IdMap, Interactions

__version__ = "0.1.0"
__all__ = ["IdMap", "Interactions", "__version__"]
