"""Training the embedding retrievers with Lightning: one loop, validation by full ranking.

Every embedding model (``lightgcn``, ``two_tower``, ``hetero_sage``,
``hetero_gin``) hands a :class:`EmbeddingModule` and its training batches to
:func:`train_module`, which runs a ``lightning.Trainer`` with

- a progress bar (``progress``), on the GPU when one is present
  (``accelerator="auto"``), else on the CPU;
- validation by **full-ranking nDCG@20** on a split carved from the training
  data (:func:`carve_validation`): every validation user ranks every item,
  what it had in the fitting part excluded, as ``recgraph evaluate`` does;
- early stopping on that figure (``patience`` validations without a gain)
  and the best epoch's weights kept (in memory, and as
  ``<checkpoint_dir>/<name>-best.safetensors`` when a folder is given, never a
  pickled Lightning checkpoint), restored at the end; the model itself saves
  its vectors and weights as npz with a JSON config;
- seeds (``lightning.seed_everything`` plus deterministic algorithms), so the
  same seed gives the same vectors;
- an MLflow logger when ``track`` is on (the ``mlflow`` extra; the run goes
  to ``$MLFLOW_TRACKING_URI``, default ``./mlruns``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.errors import ConfigError
from recgraph.files import atomic_path
from recgraph.retrieval.base import top_k

VALIDATION_K = 20
MONITOR = "val_ndcg@20"


@dataclass(frozen=True)
class RankingValidation:
    """Full-ranking nDCG@20 of vectors against held-out targets.

    Attributes
    ----------
    users
        Users with at least one target.
    truth
        ``(n_users, n_items)`` CSR, nonzero = a validation target.
    exclude
        ``(n_users, n_items)`` CSR of what each user had in the fitting part.
    one_sided
        Account graphs also exclude the user itself.
    """

    users: np.ndarray
    truth: sp.csr_matrix
    exclude: sp.csr_matrix
    one_sided: bool

    def ndcg(self, user_vectors: np.ndarray, item_vectors: np.ndarray, metric: str = "ip") -> float:
        """Mean nDCG@20 over :attr:`users` of the ranking by ``user_vectors @ item_vectors.T``."""
        k = VALIDATION_K
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        item_vectors = np.asarray(item_vectors, np.float32)
        sq_items = np.einsum("ij,ij->i", item_vectors, item_vectors)
        total = 0.0
        step = max(1, (1 << 22) // max(1, len(item_vectors)))
        for start in range(0, len(self.users), step):
            batch = self.users[start : start + step]
            scores = np.asarray(user_vectors[batch], np.float32) @ item_vectors.T
            if metric == "l2":
                scores = 2 * scores - sq_items[None, :]
            seen = self.exclude[batch]
            rows = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
            if self.one_sided:
                scores[np.arange(len(batch)), batch] = -np.inf
            ids, _ = top_k(scores, k)
            truth = self.truth[batch]
            hits = np.zeros(ids.shape, bool)
            for row in range(len(batch)):
                targets = truth.indices[truth.indptr[row] : truth.indptr[row + 1]]
                hits[row] = np.isin(ids[row], targets)
            n_targets = np.minimum(np.diff(truth.indptr), k)
            ideal = np.cumsum(discounts)[n_targets - 1]
            total += float(((hits * discounts).sum(axis=1) / ideal).sum())
        return total / max(1, len(self.users))


def carve_validation(
    train: Interactions, fraction: float, method: str | None = None, seed: int = 0
) -> tuple[Interactions, RankingValidation | None]:
    """``(fit, validation)`` from ``train`` only; ``fraction`` 0 gives ``(train, None)``.

    ``method`` defaults to ``random_per_user`` for items and ``edge_holdout``
    for account graphs; pass ``temporal_global`` (or ``temporal_pairs``) to
    validate the way a temporal test split asks. Validation targets are the
    held-out positive pairs whose user and target occur in ``fit`` and that
    ``fit`` does not already hold.
    """
    if fraction <= 0:
        return train, None
    from recgraph.data.splits import validation_split

    if method is None:
        method = "random_per_user" if train.graph_kind == "items" else "edge_holdout"
    try:
        fit, held = validation_split(train, method, fraction=fraction, seed=seed)
    except ValueError as exc:
        raise ConfigError(f"validation split {method!r}: {exc}") from None
    held = held.positives()
    users_in_fit = fit.active_users()
    targets_in_fit = fit.active_targets()
    seen = fit.seen()
    src, dst = held.src, held.dst
    keep = users_in_fit[src] & targets_in_fit[dst] & (np.asarray(seen[src, dst]).ravel() == 0)
    if held.one_sided:
        keep &= src != dst
    src, dst = src[keep], dst[keep]
    if held.one_sided and not held.directed:
        src, dst = np.r_[src, dst], np.r_[dst, src]
    if not len(src):
        return fit, None
    truth = sp.csr_matrix(
        (np.ones(len(src), np.float32), (src, dst)), shape=(train.n_users, train.n_items)
    )
    truth.sum_duplicates()
    truth.data[:] = 1.0
    users = np.flatnonzero(np.diff(truth.indptr))
    return fit, RankingValidation(users, truth, seen, held.one_sided)


def _lightning():
    try:
        import lightning as L  # noqa: N812
    except ImportError as exc:  # pragma: no cover - the gnn extra brings it
        raise ConfigError(
            "the embedding models train with Lightning: pip install 'recgraph[gnn]'"
        ) from exc
    return L


def make_module_class():
    """``EmbeddingModule``: a LightningModule whose validation is full-ranking nDCG@20.

    Built on first use so that importing this module does not import Lightning.
    A subclass implements ``training_step``, ``configure_optimizers`` and
    ``embed() -> (user_vectors, item_vectors)`` (torch tensors).
    """
    global _MODULE_CLASS
    if _MODULE_CLASS is not None:
        return _MODULE_CLASS
    L = _lightning()  # noqa: N806

    class EmbeddingModule(L.LightningModule):
        metric = "ip"

        def __init__(self) -> None:
            super().__init__()
            self.validation: RankingValidation | None = None

        def embed(self):  # pragma: no cover - every model overrides it
            raise NotImplementedError

        def embed_numpy(self) -> tuple[np.ndarray, np.ndarray]:
            import torch

            was_training = self.training
            self.eval()
            with torch.no_grad():
                users, items = self.embed()
            self.train(was_training)
            return (
                users.detach().float().cpu().numpy().astype(np.float32),
                items.detach().float().cpu().numpy().astype(np.float32),
            )

        def log_loss(self, loss, batch_size: int) -> None:
            """The epoch's mean training loss, on the progress bar and in the logger."""
            self.log(
                "train_loss",
                loss,
                prog_bar=True,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
            )

        def validation_step(self, batch, batch_idx):
            if self.validation is None:
                return None
            users, items = self.embed_numpy()
            value = self.validation.ndcg(users, items, self.metric)
            self.log(MONITOR, value, prog_bar=True, on_epoch=True, batch_size=1)
            return None

    _MODULE_CLASS = EmbeddingModule
    return EmbeddingModule


_MODULE_CLASS = None


@dataclass
class TrainingSummary:
    """What one training run did: for the model's manifest and the benchmark."""

    epochs_run: int
    best_epoch: int | None
    best_validation_ndcg: float | None
    seconds: float
    device: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_validation_ndcg@20": self.best_validation_ndcg,
            "seconds": round(self.seconds, 3),
            "device": self.device,
        }


def tensor_batches(tensors, batch_size: int, seed: int, *, drop_last: bool = False):
    """A DataLoader of shuffled mini-batches of rows of ``tensors``, indexed a batch at a time.

    Indexing whole batches (a batch sampler over a ``TensorDataset``) rather
    than collating rows one by one saves seconds per epoch on large data.
    """
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    dataset = TensorDataset(*tensors)
    generator = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(
        RandomSampler(dataset, generator=generator),
        batch_size=batch_size,
        drop_last=drop_last and len(dataset) > batch_size,
    )
    return DataLoader(dataset, sampler=sampler, batch_size=None)


class StepNumbers:
    """``n`` training steps per epoch, each batch its number (the module picks its data by it)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(range(self.n))


def seed_all(seed: int) -> None:
    """Seed Python, numpy and torch before a network is built (its initial weights draw from them)."""
    _lightning().seed_everything(seed, workers=True, verbose=False)


def train_module(
    module,
    batches: Iterable,
    *,
    name: str,
    epochs: int,
    seed: int,
    validation: RankingValidation | None = None,
    validate_every: int = 1,
    patience: int = 5,
    progress: bool = True,
    track: bool = False,
    checkpoint_dir: str | None = None,
    accelerator: str = "auto",
    params: dict[str, Any] | None = None,
) -> TrainingSummary:
    """Fit ``module`` on ``batches`` (a DataLoader) with the Lightning loop of the module docstring."""

    L = _lightning()  # noqa: N806
    from lightning.pytorch.callbacks import EarlyStopping

    for logger_name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(logger_name).setLevel(logging.ERROR)
    L.seed_everything(seed, workers=True, verbose=False)
    module.validation = validation
    callbacks: list = []
    loggers: Any = False
    if track:
        loggers = _mlflow_logger(name, params or {})
    with tempfile.TemporaryDirectory(prefix=f"recgraph-{name}-") as tmp:
        best = None
        val_batches = None
        if validation is not None:
            from torch.utils.data import DataLoader

            val_batches = DataLoader([0], batch_size=1)
            best = _best_epoch_keeper(name, checkpoint_dir)
            callbacks += [
                EarlyStopping(monitor=MONITOR, mode="max", patience=patience, check_finite=True),
                best,
            ]
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=1,
            logger=loggers,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            check_val_every_n_epoch=validate_every,
            num_sanity_val_steps=0,
            deterministic=True,
            default_root_dir=tmp,
        )
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            warnings.filterwarnings("ignore", message=".*Sparse invariant checks.*")
            trainer.fit(module, train_dataloaders=batches, val_dataloaders=val_batches)
        seconds = time.perf_counter() - started
        best_epoch = best_value = None
        if best is not None and best.state is not None:
            module.load_state_dict(best.state)
            best_value, best_epoch = best.value, best.epoch
        module.to("cpu")
    return TrainingSummary(
        epochs_run=int(trainer.current_epoch),
        best_epoch=best_epoch,
        best_validation_ndcg=best_value,
        seconds=seconds,
        device=str(trainer.strategy.root_device),
    )


def _best_epoch_keeper(name: str, checkpoint_dir: str | None):
    """A callback that keeps a copy of the weights of the best validation so far."""
    from lightning.pytorch.callbacks import Callback

    class BestEpoch(Callback):
        def __init__(self) -> None:
            self.state: dict[str, Any] | None = None
            self.value: float | None = None
            self.epoch: int | None = None

        def on_validation_end(self, trainer, pl_module) -> None:
            score = trainer.callback_metrics.get(MONITOR)
            if score is None or trainer.sanity_checking:
                return
            score = float(score)
            if self.value is not None and not score > self.value:
                return
            self.value, self.epoch = score, int(trainer.current_epoch) + 1
            self.state = {
                key: tensor.detach().to("cpu").clone()
                for key, tensor in pl_module.state_dict().items()
            }
            if checkpoint_dir is not None:
                from safetensors.torch import save_file

                os.makedirs(checkpoint_dir, exist_ok=True)
                target = os.path.join(checkpoint_dir, f"{name}-best.safetensors")
                with atomic_path(target) as tmp:
                    save_file({k: v.contiguous() for k, v in self.state.items()}, str(tmp))

    return BestEpoch()


def _mlflow_logger(name: str, params: dict[str, Any]):
    try:
        import mlflow  # noqa: F401
        from lightning.pytorch.loggers import MLFlowLogger
    except ImportError as exc:
        raise ConfigError(
            "track=true logs to MLflow, which is not installed: pip install 'recgraph[mlflow]'"
        ) from exc
    logger = MLFlowLogger(
        experiment_name=f"recgraph-{name}",
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "file:./mlruns"),
    )
    logger.log_hyperparams(params)
    return logger
