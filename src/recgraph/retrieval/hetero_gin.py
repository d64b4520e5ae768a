r"""The Bluesky account encoder: a heterogeneous GIN over hashed ids, trained on capped samples.

The design of the Bluesky who-to-follow model:

- **node input**: the account's external id hashed (md5 mod :math:`2^{32}`,
  :func:`recgraph.data.sampling.id_hash`) and embedded by a
  quotient-remainder table pair: two tables of :math:`2^{16}` rows, the
  high and low 16 bits each pick a row, and the element-wise product is the
  input. Any id, even one first seen after training, has a vector, and the
  tables' size does not grow with the graph.
- **layer** (``layers`` of them): the node's own vector, the mean of its
  followees' and the mean of its followers' vectors, concatenated, then an
  MLP :math:`3d \to d`, ReLU, :math:`d \to d` (the two relations are the
  "heterogeneous" part: following and being followed are different edges).
- **training**: self-supervised link prediction with
  ``TripletMarginLoss(margin=1)``: anchor = the source's vector, positive =
  the followed target's, negative = a target shuffled within the batch; each
  step is one degree-capped subgraph sample
  (:mod:`recgraph.data.sampling`, ``num_samples`` and ``max_degree``),
  whose edges also carry the step's message passing, so hubs and bots do not
  dominate.
- **output**: one vector per account, or with ``separate_vectors`` two:
  a "follows" vector for the account as a source and a "followed" one as a
  target (a single vector scores :math:`s \to t` like :math:`t \to s`,
  which favours mutual follows). Retrieval by squared L2 distance
  (``metric="l2"``, what the triplet loss trains) or inner product.

Served vectors are computed over the whole training graph (validation over
the fitting part only). New accounts (:meth:`fold_in`) get their vectors by
running the encoder over the grown graph: their hashed ids and their new
edges are all it needs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.data.sampling import SamplingConfig, degree_capped_samples, id_hashes
from recgraph.retrieval.biased_mf import torch_threads
from recgraph.retrieval.embeddings import EmbeddingConfig, EmbeddingRetriever, state_dict_tensors
from recgraph.retrieval.lightning_training import (
    StepNumbers,
    carve_validation,
    make_module_class,
    seed_all,
    train_module,
)

QR_BITS = 16


class HeteroGINConfig(EmbeddingConfig):
    """Hyperparameters of :class:`HeteroGIN` (sampling defaults: the issue's 32 and 32)."""

    dim: int = Field(default=64, ge=1)
    layers: int = Field(default=2, ge=1)
    num_samples: int = Field(default=32, ge=1)
    max_degree: int = Field(default=32, ge=1)
    #: False trains on the whole graph at every step instead of capped samples.
    degree_cap: bool = True
    separate_vectors: bool = True
    distance: Literal["l2", "ip"] = "l2"
    margin: float = Field(default=1.0, gt=0)
    epochs: int = Field(default=20, ge=1)
    learning_rate: float = Field(default=0.005, gt=0)
    #: Triplets per optimiser step (a sample's edges in chunks of this many).
    batch_size: int = Field(default=8192, ge=2)
    patience: int = Field(default=3, ge=1)


def mean_adjacency(src: np.ndarray, dst: np.ndarray, n: int, undirected: bool):
    """``(followees, followers)`` row-normalised torch CSR matrices: row ``v`` averages its neighbours."""
    import torch

    def normalised(rows: np.ndarray, cols: np.ndarray):
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        degree = np.asarray(matrix.sum(axis=1)).ravel()
        degree[degree == 0] = 1.0
        matrix = sp.csr_matrix(sp.diags(1.0 / degree) @ matrix)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            (n, n),
        )

    if undirected:
        both = normalised(np.r_[src, dst], np.r_[dst, src])
        return both, both
    return normalised(src, dst), normalised(dst, src)


def _encoder(cfg: HeteroGINConfig):
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = cfg.dim
            self.quotient = torch.nn.Embedding(1 << QR_BITS, d)
            self.remainder = torch.nn.Embedding(1 << QR_BITS, d)
            torch.nn.init.normal_(self.quotient.weight, mean=1.0, std=0.1)
            torch.nn.init.normal_(self.remainder.weight, std=0.1)
            self.mlps = torch.nn.ModuleList(
                [
                    torch.nn.Sequential(
                        torch.nn.Linear(3 * d, d), torch.nn.ReLU(), torch.nn.Linear(d, d)
                    )
                    for _ in range(cfg.layers)
                ]
            )
            self.heads = torch.nn.Linear(d, 2 * d) if cfg.separate_vectors else None

        def forward(self, hashes, followees, followers):
            x = self.quotient(hashes >> QR_BITS) * self.remainder(hashes & ((1 << QR_BITS) - 1))
            for mlp in self.mlps:
                x = mlp(torch.cat([x, followees @ x, followers @ x], 1))
            if self.heads is None:
                return x, x
            out = self.heads(x)
            return out[:, : cfg.dim], out[:, cfg.dim :]

    return Encoder()


class HeteroGIN(EmbeddingRetriever):
    """Hashed-id heterogeneous GIN for who-to-follow; see the module docstring."""

    name = "hetero_gin"
    config_class = HeteroGINConfig
    config: HeteroGINConfig
    supports = frozenset({"follows", "friends"})

    @property
    def metric(self) -> Literal["ip", "l2"]:  # type: ignore[override]
        return self.config.distance

    def _train(self, train: Interactions) -> None:
        import torch

        cfg = self.config
        undirected = not train.directed
        hashes = id_hashes(train.users.ids).astype(np.int64)
        with torch_threads(cfg.num_threads):
            fit, validation = carve_validation(
                train, cfg.validation_fraction, cfg.validation_method, cfg.seed
            )
            fit = fit.positives().dedupe()
            full = train.positives().dedupe()
            n = train.n_users
            sampling = SamplingConfig(
                num_samples=cfg.num_samples if cfg.degree_cap else 1,
                max_degree=cfg.max_degree if cfg.degree_cap else 1 << 62,
            )
            steps = []
            hash_pair = (hashes.astype(np.uint32), hashes.astype(np.uint32))
            for sample in degree_capped_samples(fit, sampling, hashes=hash_pair):
                followees, followers = mean_adjacency(sample.src, sample.dst, n, undirected)
                src, dst = sample.src, sample.dst
                if undirected:
                    src, dst = np.r_[src, dst], np.r_[dst, src]
                order = np.random.default_rng([cfg.seed, sample.index]).permutation(len(src))
                for start in range(0, len(order), cfg.batch_size):
                    rows = order[start : start + cfg.batch_size]
                    steps.append((followees, followers, src[rows], dst[rows]))
            seed_all(cfg.seed)
            encoder = _encoder(cfg)
            graphs = {
                "fit": mean_adjacency(fit.src, fit.dst, n, undirected),
                "full": mean_adjacency(full.src, full.dst, n, undirected),
            }
            module = self._module(encoder, torch.from_numpy(hashes), steps, graphs)
            summary = train_module(
                module,
                StepNumbers(len(steps)),
                validation=validation,
                **self._train_kwargs(self.name),
            )
            self._keep_module(encoder, summary)
            module.embed_graph = "full"
            self._set_vectors(*module.embed_numpy())

    def _module(self, encoder, hashes, steps, graphs):
        import torch

        cfg = self.config
        base = make_module_class()

        class GINModule(base):
            metric = cfg.distance

            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder
                self.register_buffer("hashes", hashes, persistent=False)
                self.loss = torch.nn.TripletMarginLoss(margin=cfg.margin)
                self.embed_graph = "fit"

            def training_step(self, batch, batch_idx):
                followees, followers, src, dst = steps[int(batch)]
                source_vectors, target_vectors = self.encoder(self.hashes, followees, followers)
                src = torch.from_numpy(src)
                dst = torch.from_numpy(dst)
                negatives = dst[torch.randperm(len(dst))]
                loss = self.loss(
                    source_vectors[src], target_vectors[dst], target_vectors[negatives]
                )
                self.log_loss(loss, len(src))
                return loss

            def embed(self):
                followees, followers = graphs[self.embed_graph]
                return self.encoder(self.hashes, followees, followers)

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=cfg.learning_rate)

        return GINModule()

    # ------------------------------------------------------------------ new accounts
    def _fold_in_vectors(self, new, n_old_users, n_old_items):
        """Run the encoder over the grown graph; known accounts keep their vectors."""
        import torch

        if new.n_users == n_old_users:
            return self.user_vectors_, self.item_vectors_
        encoder = _encoder(self.config)
        encoder.load_state_dict(state_dict_tensors(self.weights_))
        encoder.eval()
        seen = self.seen_matrix().tocoo()
        undirected = self.graph_kind == "friends"
        followees, followers = mean_adjacency(seen.row, seen.col, new.n_users, undirected)
        assert self.users is not None
        hashes = torch.from_numpy(id_hashes(self.users.ids).astype(np.int64))
        with torch.no_grad():
            sources, targets = encoder(hashes, followees, followers)
        users = np.vstack([self.user_vectors_, sources.numpy()[n_old_users:]])
        items = np.vstack([self.item_vectors_, targets.numpy()[n_old_items:]])
        return users, items
