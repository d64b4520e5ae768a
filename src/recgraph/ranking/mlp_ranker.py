r"""The TFRS ranking model: id embeddings and candidate features through a small MLP.

As in TensorFlow Recommenders' ranking tutorial, a (user, candidate) row is

.. math::

    \hat y = \sigma\big(\mathrm{MLP}([\,e_u \,\|\, e_i \,\|\, \tilde x_{ui}\,])\big),
    \qquad \mathrm{MLP}: \text{Dense } 256 \to 64 \to 1 \text{ (ReLU)},

with ``e_u`` and ``e_i`` learnt id embeddings (ids unseen in training share
one "unknown" row) and :math:`\tilde x` the candidate features standardised
with the training mean and deviation (missing values at the mean). It is
trained with binary cross-entropy on "liked" (the labels of the batch), Adam,
and early stopping on validation nDCG@20 of held-out users. Weights are saved
as npz arrays, never pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from recgraph.ranking.base import Ranker, RankerConfig, RankingBatch, ndcg_at


class MLPRankerConfig(RankerConfig):
    """Sizes and training of the TFRS ranking model."""

    embedding_dim: int = Field(default=32, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [256, 64])
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=3, ge=1)
    eval_at: int = Field(default=20, ge=1)
    seed: int = 0


class MLPRanker(Ranker):
    """The TFRS ranking model (see the module docstring)."""

    name = "mlp_ranker"
    config_class = MLPRankerConfig
    config: MLPRankerConfig

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.weights_: dict[str, np.ndarray] = {}
        self.mean_ = np.zeros(0, np.float32)
        self.std_ = np.ones(0, np.float32)
        self.n_users_ = 0
        self.n_items_ = 0

    # ------------------------------------------------------------------ the network
    def _network(self, n_features: int):
        import torch
        from torch import nn

        cfg = self.config

        class Net(nn.Module):
            def __init__(self, n_users: int, n_items: int) -> None:
                super().__init__()
                dim = cfg.embedding_dim
                self.users = nn.Embedding(n_users + 1, max(dim, 1))
                self.items = nn.Embedding(n_items + 1, max(dim, 1))
                layers: list[nn.Module] = []
                width = 2 * dim + n_features
                for size in cfg.hidden:
                    layers += [nn.Linear(width, size), nn.ReLU()]
                    width = size
                layers.append(nn.Linear(width, 1))
                self.mlp = nn.Sequential(*layers)

            def forward(self, users, items, features):
                parts = [features]
                if cfg.embedding_dim:
                    parts = [self.users(users), self.items(items), features]
                return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

        return Net(self.n_users_, self.n_items_)

    def _inputs(self, batch: RankingBatch):
        import torch

        users = np.where(batch.users < self.n_users_, batch.users + 1, 0)
        items = np.where(batch.items < self.n_items_, batch.items + 1, 0)
        features = (batch.features - self.mean_) / self.std_
        features = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        return (
            torch.from_numpy(users.astype(np.int64)),
            torch.from_numpy(items.astype(np.int64)),
            torch.from_numpy(features),
        )

    # ------------------------------------------------------------------ training
    def _fit(self, train: RankingBatch, valid: RankingBatch | None) -> None:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        x = train.features.astype(np.float64)
        self.mean_ = np.nan_to_num(np.nanmean(x, axis=0)).astype(np.float32)
        std = np.nan_to_num(np.nanstd(x, axis=0))
        self.std_ = np.where(std > 1e-9, std, 1.0).astype(np.float32)
        self.n_users_ = int(train.users.max()) + 1 if len(train) else 0
        self.n_items_ = int(train.items.max()) + 1 if len(train) else 0
        net = self._network(train.features.shape[1])
        optimiser = torch.optim.Adam(
            net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        users, items, features = self._inputs(train)
        assert train.labels is not None
        labels = torch.from_numpy(train.labels.astype(np.float32))
        best, best_state, waited, history = -1.0, None, 0, []
        for _epoch in range(cfg.epochs):
            net.train()
            order = torch.from_numpy(rng.permutation(len(train)))
            for start in range(0, len(train), cfg.batch_size):
                rows = order[start : start + cfg.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(users[rows], items[rows], features[rows]), labels[rows])
                loss.backward()
                optimiser.step()
            if valid is None or valid.labels is None or not valid.labels.any():
                continue
            self.weights_ = _to_numpy(net)
            score = ndcg_at(self._score(valid), valid.labels, valid.group_sizes(), cfg.eval_at)
            history.append(score)
            if score > best:
                best, best_state, waited = score, self.weights_, 0
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        self.weights_ = best_state if best_state is not None else _to_numpy(net)
        self.fit_report = {"epochs": len(history) or cfg.epochs}
        if history:
            self.fit_report["valid_ndcg"] = float(best)

    def _score(self, batch: RankingBatch) -> np.ndarray:
        import torch

        net = self._network(batch.features.shape[1])
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
        net.eval()
        with torch.no_grad():
            users, items, features = self._inputs(batch)
            return net(users, items, features).numpy()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_,
            "std": self.std_,
            "sizes": np.array([self.n_users_, self.n_items_], np.int64),
            **{f"weights.{k}": v for k, v in self.weights_.items()},
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.mean_, self.std_ = state["mean"], state["std"]
        self.n_users_, self.n_items_ = (int(x) for x in state["sizes"])
        self.weights_ = {
            k[len("weights.") :]: v for k, v in state.items() if k.startswith("weights.")
        }


def _to_numpy(net) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
