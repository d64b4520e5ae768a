r"""The TFRS two-tower retriever: a query tower with time, a candidate tower with titles.

As in the TensorFlow Recommenders "building deep retrieval models" design:

- **query tower**: the user's id embedding, the request time bucketed into
  ``time_buckets`` (30; TFRS has 1,000) equal-width buckets between the training minimum
  and maximum (its own embedding), and the timestamp standardised by the
  training mean and deviation, concatenated, then an MLP (``layers``,
  default ``[64, 32]``: ReLU between layers, none after the last);
- **candidate tower**: the item's id embedding plus the mean of its title's
  word embeddings (the ``max_words`` most frequent title words, 10,000 by
  default; titles come from ``item_features``), with ``use_genres`` also
  the mean of its genres' embeddings, then the same MLP shape;
- **loss**: in-batch softmax over the batch's (query, candidate) pairs,
  logits :math:`q_i \cdot c_j / \tau` (``temperature``), with the log-q
  correction (``log_q_correction``, on by default: subtract
  :math:`\log p_j`, the candidate's share of the training rows, so popular
  items are not over-penalised for being everyone's in-batch negative) and
  accidental hits (the same item as another row's positive) masked.

Every positive training row is one example, with its own timestamp. At
serving time the query tower runs for the current time (``query_time``:
``None`` is the wall clock; a number fixes it), clipped to the training
range, since the model has seen nothing beyond it: on data older than the
clock this is the end of training. Without timestamps (or ``use_time = false``)
the query tower has the id embedding alone.

Training asks each row at the time of its interaction; serving asks every
user at one time. Where the test rows come after training (a temporal
split, and production) the two agree. Where they are spread over each
user's own past (a random split), the end of training is a time most users
were never seen at, and fine time buckets (TFRS's 1,000 are about 4 hours
apart on MovieLens 100k) learn each user's sessions: the query tower answers
for a moment the user was absent. The default 30 buckets (about 5.5 days
there) learn less of them. ``serving_time = "last_seen"`` asks each
known user at the earlier of that time and its latest training interaction
instead; ``benchmarks/embeddings.py`` measures both (the default, ``now``,
was chosen on the temporal validation split, where ``last_seen`` loses).
For the same reason a temporal early-stopping slice (the latest rows of
train) is trained on afterwards by default (``refit``): the query asked at
the end of training needs those rows most.

Row 0 of each id table is the out-of-vocabulary row (trained on nothing,
zero-initialised): :meth:`fold_in` gives a new item a vector from its title
(``item_features``) and a new user the vector of an unknown user at the
current time (the same for every new user: a time-aware popularity).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.retrieval.biased_mf import torch_threads
from recgraph.retrieval.embeddings import EmbeddingConfig, EmbeddingRetriever, state_dict_tensors
from recgraph.retrieval.lightning_training import (
    carve_validation,
    make_module_class,
    seed_all,
    tensor_batches,
    train_module,
)


class TwoTowerConfig(EmbeddingConfig):
    """Hyperparameters of :class:`TwoTower` (defaults: TFRS's where it has them).

    Where they differ (time buckets, temperature, refit) the default was
    chosen on validation carved from the ML-100k train split (each field's
    comment gives the figures); none on test.
    """

    defaults_chosen_on: ClassVar[str] = (
        "TFRS's design; time_buckets (30), temperature and refit on validation "
        "(carved from train) on MovieLens 100k: global temporal recall@100 at three cuts "
        "of train with random nDCG@20 beside it (benchmarks/defaults_study.py --models "
        "two_tower); temperature and refit on one temporal cut (benchmarks/embeddings.py "
        "--validate). No other change of the grid beat the spread of seeds"
    )
    embedding_dim: int = Field(default=32, ge=1)
    layers: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    use_time: bool = True
    #: 30, not TFRS's 1,000: on ML-100k validation (``benchmarks/defaults_study.py
    #: --models two_tower``, three seeds each) temporal recall@100 (three cuts)
    #: 0.3661 against 0.3585 (100 buckets 0.3737: a tie within the seed spread),
    #: random nDCG@20 0.2064 against 0.1382 (100 buckets 0.1847): fine buckets
    #: learn each user's sessions, which a query asked at one time cannot use.
    time_buckets: int = Field(default=30, ge=1)
    use_titles: bool = True
    max_words: int = Field(default=10_000, ge=1)
    #: The mean of the item's genre embeddings in the candidate tower too
    #: (genres from ``item_features``; not in the TFRS design).
    use_genres: bool = False
    log_q_correction: bool = True
    remove_accidental_hits: bool = True
    #: Chosen on ML-100k temporal validation (with the refit, 1,000 buckets): recall@100
    #: 0.4722 at 0.2 against 0.4625 at 0.1 (nDCG@20 0.2202 against 0.2012);
    #: on random validation 0.2 costs nDCG@20 0.1738 against 0.1822.
    temperature: float = Field(default=0.2, gt=0)
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=1024, ge=2)
    learning_rate: float = Field(default=0.005, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=3, ge=1)
    #: Train again on all of train after a temporal early-stopping slice (the
    #: latest rows, which a model asked "now" needs most). Chosen on
    #: validation (``benchmarks/results/embeddings.validation.json``): on ML-100k
    #: temporal recall@100 0.4625 with against 0.3938 without; on ML-100k
    #: random (a random slice, not refitted) nDCG@20 0.1822 without against
    #: 0.1177 with.
    refit: bool | None = None
    #: Unix seconds the query tower runs for at serving time; ``None``: now.
    query_time: float | None = None
    #: The time a known user's query runs at: ``now`` (``query_time`` or
    #: the clock, clipped to training) or ``last_seen`` (the earlier of that
    #: and the user's latest training interaction; see the module docstring).
    serving_time: Literal["now", "last_seen"] = "now"


def _mlp(sizes: list[int], width: int):
    import torch

    layers: list = []
    for i, size in enumerate(sizes):
        layers.append(torch.nn.Linear(width, size))
        if i < len(sizes) - 1:
            layers.append(torch.nn.ReLU())
        width = size
    return torch.nn.Sequential(*layers)


def _towers(
    cfg: TwoTowerConfig, n_users: int, n_items: int, n_words: int, timed: bool, n_genres: int = 0
):
    """The two towers as one ``torch.nn.Module`` (ids shifted by one: row 0 is unknown)."""
    import torch

    class Towers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = cfg.embedding_dim
            self.user_id = torch.nn.Embedding(n_users + 1, d)
            self.item_id = torch.nn.Embedding(n_items + 1, d)
            width_q = d
            if timed:
                self.time_bucket = torch.nn.Embedding(cfg.time_buckets + 2, d)
                width_q += d + 1
            width_c = d
            if n_words:
                self.words = torch.nn.EmbeddingBag(n_words, d, mode="mean")
                width_c += d
            if n_genres:
                self.genres = torch.nn.EmbeddingBag(n_genres, d, mode="mean")
                width_c += d
            self.query_mlp = _mlp(cfg.layers, width_q)
            self.candidate_mlp = _mlp(cfg.layers, width_c)
            for table in (self.user_id, self.item_id):
                torch.nn.init.normal_(table.weight, std=0.1)
                with torch.no_grad():
                    table.weight[0].zero_()

        def query(self, users, buckets, normalised):
            parts = [self.user_id(users)]
            if timed:
                parts += [self.time_bucket(buckets), normalised[:, None]]
            return self.query_mlp(torch.cat(parts, 1))

        def candidate(self, items, word_ids, word_offsets, word_weights, genres=None):
            parts = [self.item_id(items)]
            if n_words:
                parts.append(
                    self.words(word_ids, word_offsets, per_sample_weights=word_weights)
                    if word_weights is not None
                    else self.words(word_ids, word_offsets)
                )
            if n_genres:
                parts.append(self.genres(*genres))
            return self.candidate_mlp(torch.cat(parts, 1))

    return Towers()


class _TimeScale:
    """Bucket edges and standardisation of timestamps, from the training rows."""

    def __init__(self, low: float, high: float, mean: float, std: float, buckets: int) -> None:
        self.low, self.high, self.mean, self.std = low, high, mean, max(std, 1e-9)
        self.edges = np.linspace(low, high, buckets + 1)[1:-1]

    @classmethod
    def fit(cls, timestamps: np.ndarray, buckets: int) -> _TimeScale:
        t = timestamps.astype(np.float64)
        return cls(float(t.min()), float(t.max()), float(t.mean()), float(t.std()), buckets)

    def features(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(bucket, standardised)``; bucket 0..buckets-1 inside the range (clipped)."""
        t = np.clip(np.asarray(timestamps, np.float64), self.low, self.high)
        return np.digitize(t, self.edges).astype(np.int64), ((t - self.mean) / self.std).astype(
            np.float32
        )

    def as_array(self) -> np.ndarray:
        return np.asarray([self.low, self.high, self.mean, self.std], np.float64)


class TwoTower(EmbeddingRetriever):
    """Two-tower retrieval with time and title features; see the module docstring."""

    name = "two_tower"
    config_class = TwoTowerConfig
    config: TwoTowerConfig
    supports = frozenset({"items"})
    uses_item_features = True

    vocabulary_: list[str]
    #: Genre names of the candidate tower's genre table (empty: no genres).
    genres_: list[str]
    time_scale_: _TimeScale | None
    #: Each user's latest training timestamp (``-inf``: none), for ``last_seen``.
    user_last_time_: np.ndarray | None

    # ------------------------------------------------------------------ training
    def _train(self, train: Interactions) -> None:
        import torch

        cfg = self.config
        timed = cfg.use_time and train.timestamp is not None
        features = self._features(train)
        self.vocabulary_ = (
            features.word_vocabulary(cfg.max_words) if cfg.use_titles and features else []
        )
        self.genres_ = features.genre_names() if cfg.use_genres and features else []
        positives = train.positives()
        # The time range is all of train's, early-stopping slice included: on
        # a temporal validation split, asking at the latest bucket the towers
        # trained on (the range of the fitting part) scored recall@100 0.2491
        # against 0.3938 asking at the end of train (benchmarks/embeddings.py
        # notes): the gain of the time feature there is the trend, carried
        # past the rows the towers saw, not the latest session.
        self.time_scale_ = (
            _TimeScale.fit(positives.timestamp, cfg.time_buckets)
            if timed and len(positives)
            else None
        )
        self.user_last_time_ = (
            _last_times(positives, train.n_users) if self.time_scale_ is not None else None
        )
        with torch_threads(cfg.num_threads):
            fit, validation = carve_validation(
                train, cfg.validation_fraction, cfg.validation_method, cfg.seed
            )
            fit = fit.positives()
            counts = np.bincount(fit.dst, minlength=train.n_items).astype(np.float64)
            log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / max(1.0, counts.sum())))
            seed_all(cfg.seed)
            towers = _towers(
                cfg,
                train.n_users,
                train.n_items,
                len(self.vocabulary_),
                self.time_scale_ is not None,
                len(self.genres_),
            )
            titles = self._title_inputs(features, train.n_items)
            genres = self._genre_inputs(features, train.n_items)
            module = self._module(towers, train.n_users, train.n_items, titles, log_q, genres)
            if self.time_scale_ is not None:
                buckets, normalised = self.time_scale_.features(fit.timestamp)
            else:
                buckets = np.zeros(len(fit), np.int64)
                normalised = np.zeros(len(fit), np.float32)
            batches = tensor_batches(
                [
                    torch.from_numpy(fit.src.astype(np.int64)),
                    torch.from_numpy(fit.dst.astype(np.int64)),
                    torch.from_numpy(buckets),
                    torch.from_numpy(normalised),
                ],
                cfg.batch_size,
                cfg.seed,
                drop_last=True,
            )
            # validation asks as serving will, from what the fitting part knows
            fit_last = _last_times(fit, train.n_users) if self.time_scale_ is not None else None
            module.validation_query = self._query_time_tensors(train.n_users, fit_last)
            summary = train_module(
                module, batches, validation=validation, **self._train_kwargs(self.name)
            )
            self._keep_module(towers, summary)
            self._towers_cache = towers
            module.validation_query = self._query_time_tensors(train.n_users, self.user_last_time_)
            self._set_vectors(*module.embed_numpy())

    def _features(self, train: Interactions) -> ItemFeatures | None:
        return self.item_features

    def _title_inputs(self, features: ItemFeatures | None, n_items: int):
        """Flattened word ids and offsets of each item's title (EmbeddingBag input)."""

        if not self.vocabulary_:
            return None
        assert features is not None and len(features) == n_items
        return _bag_input(features.title_matrix(self.vocabulary_))

    def _genre_inputs(self, features: ItemFeatures | None, n_items: int):
        """Flattened genre ids and offsets of each item (EmbeddingBag input), or ``None``."""
        if not self.genres_:
            return None
        assert features is not None and len(features) == n_items
        return _bag_input(features.genre_matrix(self.genres_))

    def _module(self, towers, n_users: int, n_items: int, titles, log_q, genres=None):
        import torch

        cfg = self.config
        base = make_module_class()
        retriever = self

        class TwoTowerModule(base):
            def __init__(self) -> None:
                super().__init__()
                self.towers = towers
                self.register_buffer("log_q", log_q.float(), persistent=False)
                if titles is not None:
                    self.register_buffer("word_ids", titles[0], persistent=False)
                    self.register_buffer("word_offsets", titles[1], persistent=False)
                if genres is not None:
                    self.register_buffer("genre_ids", genres[0], persistent=False)
                    self.register_buffer("genre_offsets", genres[1], persistent=False)
                self.validation_query = None

            def _candidates(self, items):
                rows = None
                if genres is not None:
                    rows = _bag_rows(self.genre_ids, self.genre_offsets, items)
                if titles is None:
                    return self.towers.candidate(items + 1, None, None, None, rows)
                ids, offsets = _bag_rows(self.word_ids, self.word_offsets, items)
                return self.towers.candidate(items + 1, ids, offsets, None, rows)

            def training_step(self, batch, batch_idx):
                users, items, buckets, normalised = batch
                queries = self.towers.query(users + 1, buckets, normalised)
                candidates = self._candidates(items)
                logits = queries @ candidates.T / cfg.temperature
                if cfg.log_q_correction:
                    logits = logits - self.log_q[items][None, :]
                if cfg.remove_accidental_hits:
                    same = items[:, None] == items[None, :]
                    same.fill_diagonal_(False)
                    logits = logits.masked_fill(same, float("-inf"))
                labels = torch.arange(len(users), device=self.device)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                self.log_loss(loss, len(users))
                return loss

            def embed(self):
                buckets, normalised = self.validation_query
                users = torch.arange(n_users, device=self.device)
                queries = self.towers.query(
                    users + 1, buckets.to(self.device), normalised.to(self.device)
                )
                items = torch.arange(n_items, device=self.device)
                return queries, self._candidates(items)

            def configure_optimizers(self):
                return torch.optim.Adam(
                    self.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
                )

        del retriever
        return TwoTowerModule()

    # ------------------------------------------------------------------ serving time
    def _query_times(
        self, users: np.ndarray, at: float | None = None, last: np.ndarray | None = None
    ) -> np.ndarray:
        """When each user's query runs: ``at`` (default ``query_time``, else now), per ``serving_time``.

        ``last_seen`` takes the earlier of that and the user's latest training
        interaction (``last``, default :attr:`user_last_time_`); users without
        one (new users) keep ``at``.
        """
        when = at if at is not None else self.config.query_time
        when = time.time() if when is None else float(when)
        times = np.full(len(users), when, np.float64)
        last = self.user_last_time_ if last is None else last
        if self.config.serving_time == "last_seen" and last is not None:
            known = users < len(last)
            known[known] = np.isfinite(last[users[known]])
            times[known] = np.minimum(times[known], last[users[known]])
        return times

    def _query_time_features(
        self, users: np.ndarray, at: float | None = None, last: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The query tower's time inputs ``(bucket, standardised)`` for each of ``users``."""
        if self.time_scale_ is None:
            return np.zeros(len(users), np.int64), np.zeros(len(users), np.float32)
        return self.time_scale_.features(self._query_times(users, at, last))

    def _query_time_tensors(self, n_users: int, last: np.ndarray | None):
        import torch

        buckets, normalised = self._query_time_features(np.arange(n_users), last=last)
        return torch.from_numpy(buckets), torch.from_numpy(normalised)

    def _load_towers(self):
        towers = getattr(self, "_towers_cache", None)
        if towers is None:
            towers = _towers(
                self.config,
                int(self.weights_["user_id.weight"].shape[0]) - 1,
                int(self.weights_["item_id.weight"].shape[0]) - 1,
                len(self.vocabulary_),
                self.time_scale_ is not None,
                len(self.genres_),
            )
            towers.load_state_dict(state_dict_tensors(self.weights_))
            towers.eval()
            self._towers_cache = towers
        return towers

    def query_vectors(self, users: np.ndarray, at: float | None = None) -> np.ndarray:
        """The query tower for ``users`` at time ``at`` (unix seconds; default: now, clipped).

        Users unknown to the trained tables (index past them) get the
        unknown-user row.
        """
        import torch

        towers = self._load_towers()
        known = towers.user_id.num_embeddings - 1
        users = np.asarray(users, np.int64)
        ids = np.where(users < known, users + 1, 0)
        buckets, normalised = self._query_time_features(users, at)
        with torch.no_grad():
            out = towers.query(
                torch.from_numpy(ids), torch.from_numpy(buckets), torch.from_numpy(normalised)
            )
        return out.numpy().astype(np.float32)

    def candidate_vectors(self, items: np.ndarray, features: ItemFeatures | None) -> np.ndarray:
        """The candidate tower for ``items`` (unknown ones by title alone, from ``features``)."""
        import torch

        towers = self._load_towers()
        known = towers.item_id.num_embeddings - 1
        items = np.asarray(items, np.int64)
        ids = np.where(items < known, items + 1, 0)
        word_ids = offsets = genres = None
        described = (
            features if features is not None else ItemFeatures.from_records([""] * len(items))
        )
        if self.vocabulary_:
            word_ids, offsets = _bag_input(described.title_matrix(self.vocabulary_))
        if self.genres_:
            genres = _bag_input(described.genre_matrix(self.genres_))
        with torch.no_grad():
            out = towers.candidate(torch.from_numpy(ids), word_ids, offsets, None, genres)
        return out.numpy().astype(np.float32)

    def fold_in(self, new: Interactions, item_features: ItemFeatures | None = None) -> TwoTower:
        """New items get the candidate tower of their title; new users the unknown-user query."""
        self._new_item_features = item_features
        return super().fold_in(new)  # type: ignore[return-value]

    def _fold_in_vectors(self, new, n_old_users, n_old_items):
        users = np.zeros((new.n_users, self.user_vectors_.shape[1]), np.float32)
        users[:n_old_users] = self.user_vectors_
        items = np.zeros((new.n_items, self.item_vectors_.shape[1]), np.float32)
        items[:n_old_items] = self.item_vectors_
        if new.n_users > n_old_users:
            users[n_old_users:] = self.query_vectors(np.arange(n_old_users, new.n_users))
        if new.n_items > n_old_items:
            fresh = np.arange(n_old_items, new.n_items)
            features = getattr(self, "_new_item_features", None)
            described = None
            if features is not None:
                assert self.items is not None
                described = features.aligned(self.items)
                described = ItemFeatures(
                    described.ids[fresh],
                    described.titles[fresh],
                    tuple(described.genres[i] for i in fresh),
                    described.created_at[fresh],
                )
            items[n_old_items:] = self.candidate_vectors(np.full(len(fresh), 1 << 40), described)
        return users, items

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state["vocabulary"] = (
            np.asarray(self.vocabulary_, dtype=str) if self.vocabulary_ else np.zeros(0, "<U1")
        )
        if self.genres_:
            state["genres"] = np.asarray(self.genres_, dtype=str)
        if self.time_scale_ is not None:
            state["time_scale"] = self.time_scale_.as_array()
        if self.user_last_time_ is not None:
            state["user_last_time"] = self.user_last_time_
        return state

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        super()._set_state(state)
        self.vocabulary_ = state["vocabulary"].tolist()
        self.genres_ = state["genres"].tolist() if "genres" in state else []
        self.time_scale_ = None
        if "time_scale" in state:
            low, high, mean, std = state["time_scale"].tolist()
            self.time_scale_ = _TimeScale(low, high, mean, std, self.config.time_buckets)
        self.user_last_time_ = state["user_last_time"] if "user_last_time" in state else None
        self._towers_cache = None


def _last_times(positives: Interactions, n_users: int) -> np.ndarray:
    """Each user's latest timestamp in ``positives`` (``-inf`` for users without one)."""
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, positives.src, positives.timestamp.astype(np.float64))
    return last


def _bag_input(matrix):
    """A CSR matrix's column ids and row offsets as EmbeddingBag input tensors."""
    import torch

    return (
        torch.from_numpy(matrix.indices.astype(np.int64)),
        torch.from_numpy(matrix.indptr[:-1].astype(np.int64)),
    )


def _bag_rows(word_ids, offsets, rows):
    """The EmbeddingBag input of some items' titles, from the whole catalogue's."""
    import torch

    ends = torch.cat([offsets[1:], torch.tensor([len(word_ids)], device=offsets.device)])
    starts, stops = offsets[rows], ends[rows]
    lengths = stops - starts
    new_offsets = torch.cat(
        [torch.zeros(1, dtype=torch.long, device=rows.device), lengths.cumsum(0)[:-1]]
    )
    total = int(lengths.sum())
    if total == 0:
        return word_ids[:0], new_offsets
    row_of = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
    position = torch.arange(total, device=rows.device) - new_offsets[row_of]
    return word_ids[starts[row_of] + position], new_offsets
