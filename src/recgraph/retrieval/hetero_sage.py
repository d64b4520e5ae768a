r"""The MovieLens GraphSAGE: users x items as a PyG ``HeteroData``, link prediction by dot product.

The design of PyG's heterogeneous link-prediction example on MovieLens:

- a ``HeteroData`` with ``user`` and ``item`` nodes and ``(user, likes,
  item)`` edges plus their reverse (``ToUndirected``);
- inputs: a user id embedding; an item id embedding plus a linear layer over
  the item's genre multi-hot (from ``item_features``; without genres the id
  embedding alone);
- two ``SAGEConv`` layers (ReLU between) made heterogeneous by ``to_hetero``
  (sum over edge types), a dot-product link classifier, BCE with logits;
- ``RandomLinkSplit`` on the fitting edges with disjoint supervision edges
  (``disjoint_train_ratio``, 0.3: message passing never sees the edges it is
  asked to predict) and negatives at ``negative_ratio`` 2: ``static``
  (sampled once by the split) or ``dynamic`` (redrawn every epoch);
- ``batching``: ``full`` (one step per epoch on the whole graph) or
  ``mini`` (mini-batches of supervision edges, ``batch_size`` each). PyG's
  ``LinkNeighborLoader`` samples neighbourhoods through ``pyg-lib`` or
  ``torch-sparse``, neither of which has a wheel for this torch on PyPI, so
  ``mini`` keeps the whole neighbourhood (exact message passing) and only
  splits the supervision edges: more, smaller optimiser steps per epoch.

Served vectors are the GNN's outputs over the whole training graph (all of
its edges pass messages); validation embeds over the fitting graph only.
New users and items (:meth:`fold_in`) get the mean of their neighbours'
vectors (the default of :class:`~recgraph.retrieval.embeddings.EmbeddingRetriever`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.biased_mf import torch_threads
from recgraph.retrieval.embeddings import EmbeddingConfig, EmbeddingRetriever
from recgraph.retrieval.lightning_training import (
    StepNumbers,
    carve_validation,
    make_module_class,
    seed_all,
    train_module,
)

EDGE = ("user", "likes", "item")
REVERSE = ("item", "rev_likes", "user")


class HeteroSAGEConfig(EmbeddingConfig):
    """Hyperparameters of :class:`HeteroSAGE` (defaults: the PyG example's)."""

    hidden: int = Field(default=64, ge=1)
    negatives: Literal["static", "dynamic"] = "dynamic"
    negative_ratio: float = Field(default=2.0, gt=0)
    disjoint_train_ratio: float = Field(default=0.3, gt=0, lt=1)
    batching: Literal["full", "mini"] = "full"
    batch_size: int = Field(default=2048, ge=1)
    epochs: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=0.01, gt=0)
    use_genres: bool = True
    validate_every: int = Field(default=5, ge=1)
    patience: int = Field(default=4, ge=1)


def hetero_graph(data: Interactions, genres: np.ndarray | None, src: np.ndarray, dst: np.ndarray):
    """The ``HeteroData`` of the user-item edges ``src -> dst`` (reverse edges added)."""
    import torch
    import torch_geometric.transforms as T  # noqa: N812
    from torch_geometric.data import HeteroData

    graph = HeteroData()
    graph["user"].node_id = torch.arange(data.n_users)
    graph["item"].node_id = torch.arange(data.n_items)
    if genres is not None:
        graph["item"].x = torch.from_numpy(genres)
    graph[EDGE].edge_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    return T.ToUndirected()(graph)


def _network(cfg: HeteroSAGEConfig, n_users: int, n_items: int, n_genres: int, metadata):
    import torch
    from torch_geometric.nn import SAGEConv, to_hetero

    class GNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = SAGEConv(cfg.hidden, cfg.hidden)
            self.conv2 = SAGEConv(cfg.hidden, cfg.hidden)

        def forward(self, x, edge_index):
            x = torch.relu(self.conv1(x, edge_index))
            return self.conv2(x, edge_index)

    class Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_emb = torch.nn.Embedding(n_users, cfg.hidden)
            self.item_emb = torch.nn.Embedding(n_items, cfg.hidden)
            self.item_lin = torch.nn.Linear(n_genres, cfg.hidden) if n_genres else None
            self.gnn = to_hetero(GNN(), metadata=metadata, aggr="sum")

        def forward(self, graph):
            items = self.item_emb(graph["item"].node_id)
            if self.item_lin is not None:
                items = items + self.item_lin(graph["item"].x)
            x = {"user": self.user_emb(graph["user"].node_id), "item": items}
            return self.gnn(x, graph.edge_index_dict)

    return Network()


class HeteroSAGE(EmbeddingRetriever):
    """Heterogeneous GraphSAGE link prediction on users x items; see the module docstring."""

    name = "hetero_sage"
    config_class = HeteroSAGEConfig
    config: HeteroSAGEConfig
    supports = frozenset({"items"})
    uses_item_features = True

    def _train(self, train: Interactions) -> None:
        import torch_geometric.transforms as T  # noqa: N812

        cfg = self.config
        genres = None
        features = self.item_features
        if cfg.use_genres and features is not None and features.genre_names():
            genres = features.genre_matrix().toarray().astype(np.float32)
        with torch_threads(cfg.num_threads):
            fit, validation = carve_validation(
                train, cfg.validation_fraction, cfg.validation_method, cfg.seed
            )
            fit = fit.positives().dedupe()
            full = train.positives().dedupe()
            seed_all(cfg.seed)
            fit_graph = hetero_graph(train, genres, fit.src, fit.dst)
            full_graph = hetero_graph(train, genres, full.src, full.dst)
            split = T.RandomLinkSplit(
                num_val=0.0,
                num_test=0.0,
                disjoint_train_ratio=cfg.disjoint_train_ratio,
                neg_sampling_ratio=cfg.negative_ratio,
                add_negative_train_samples=cfg.negatives == "static",
                edge_types=EDGE,
                rev_edge_types=REVERSE,
            )
            supervised, _, _ = split(fit_graph)
            network = _network(
                cfg,
                train.n_users,
                train.n_items,
                0 if genres is None else genres.shape[1],
                supervised.metadata(),
            )
            module = self._module(network, supervised, {"fit": fit_graph, "full": full_graph})
            n_supervision = supervised[EDGE].edge_label_index.shape[1]
            steps = 1 if cfg.batching == "full" else -(-n_supervision // cfg.batch_size)
            summary = train_module(
                module,
                StepNumbers(steps),
                validation=validation,
                **self._train_kwargs(self.name),
            )
            self._keep_module(network, summary)
            module.embed_graph = "full"
            self._set_vectors(*module.embed_numpy())

    def _module(self, network, supervised, graphs):
        import torch
        from torch_geometric.utils import negative_sampling

        cfg = self.config
        base = make_module_class()
        labels = supervised[EDGE].edge_label
        label_index = supervised[EDGE].edge_label_index
        positives = label_index[:, labels == 1]
        n_users = supervised["user"].num_nodes
        n_items = supervised["item"].num_nodes
        all_fit = graphs["fit"][EDGE].edge_index

        class SAGEModule(base):
            def __init__(self) -> None:
                super().__init__()
                self.network = network
                self.embed_graph = "fit"
                self.epoch_pairs = None

            def on_train_epoch_start(self) -> None:
                if cfg.negatives == "static":
                    pairs, targets = label_index, labels.float()
                else:
                    negatives = negative_sampling(
                        all_fit,
                        num_nodes=(n_users, n_items),
                        num_neg_samples=int(positives.shape[1] * cfg.negative_ratio),
                    )
                    pairs = torch.cat([positives, negatives], 1)
                    targets = torch.cat(
                        [torch.ones(positives.shape[1]), torch.zeros(negatives.shape[1])]
                    )
                order = torch.randperm(pairs.shape[1])
                self.epoch_pairs = (pairs[:, order], targets[order])

            def training_step(self, batch, batch_idx):
                pairs, targets = self.epoch_pairs
                if cfg.batching == "mini":
                    rows = slice(int(batch) * cfg.batch_size, (int(batch) + 1) * cfg.batch_size)
                    pairs, targets = pairs[:, rows], targets[rows]
                out = self.network(supervised)
                logits = (out["user"][pairs[0]] * out["item"][pairs[1]]).sum(-1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
                self.log_loss(loss, len(targets))
                return loss

            def embed(self):
                out = self.network(graphs[self.embed_graph])
                return out["user"], out["item"]

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=cfg.learning_rate)

        return SAGEModule()
