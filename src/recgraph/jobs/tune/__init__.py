"""Tuning a pipeline question on validation carved from the training data: ``recgraph tune``.

Only the training data is read. A validation split is carved from it
(:func:`recgraph.data.splits.validation_split`; by default temporal where
timestamps exist: ``temporal_global`` on a feed, ``temporal_pairs`` on an
account graph, else ``random_per_user`` / ``edge_holdout``). Everything is
fitted on the rest and scored on the validation targets with the pipeline's
own serving path (:meth:`QuestionModel.recommend`, the rules and fallback
included), so the figures mean what ``recgraph evaluate`` would say.

Three phases, the first two Optuna studies (TPE, seeded), within a time budget:

1. **retrievers**: each candidate retriever alone, its key hyperparameters
   (EASE's regularisation, item-kNN's similarity and neighbours, ``popular``'s
   ``window_days``, the neighbourhood models' path, PPR's restart, ...), the
   defaults tried first;
2. **pipeline**: which of the best retrievers to keep, the candidate depth,
   whether to rank at all, and the ranker's parameters. The first trial is the
   best single retriever alone, so the choice is never worse on validation
   than the best single retriever; the second the best three under the
   default ranker at depth 200 (a bag of five boosters), so that one is
   always compared. Every ranker tried serves as it would be served: where
   the label slice is a random one checked nested (a random validation split
   of a feed), taught on :data:`~recgraph.jobs.tune.spaces.FINAL_SLICES`
   outer label slices (``RankerSpec.final_slices``), so its figure is less
   one slice's luck; a slice cut in time is the same whatever the seed, and
   one global cut has no nested check, so there it is taught on one;
3. **confirm**: the best of many noisy trials runs high on the split it was
   chosen on, so the few best pipelines are scored again on a second
   validation (over twice the horizon when temporal: a lead that lasts only
   days after the cut is not one serving keeps; another random draw
   otherwise), each with two ranker seeds (the ranker's own draw moves a
   figure as much as its parameters do), and a pipeline is kept only when
   it beats the best single retriever on every one of those figures (the
   best mean share of those that do, its own phase-2 figure left out: the
   best of many noisy trials runs high; else the best single retriever).

The question given as the base (``recgraph tune``: the pipeline file's) and
any ``also`` ones (``benchmarks/two_stage.py``: the shipped file's and the
code defaults' ranked question) are tried first, as they are, and are
eligible as the pick like phase 2's pipelines (the best of them that leads
the best single retriever also faces phase 3), so tuning never keeps a
pipeline validation scores below them. The budget starts after them.
   Without a second validation (``leave_last_n``, a fraction of 0.5 or more
   when temporal) the seeds are checked on the first alone, and the TOML
   says so. The first finalist's check always runs in full, so the
   wall-clock can exceed the budget (1.65-5x at 2-6 minutes, load ~10).

With a time budget the number of trials depends on the machine; give
``max_trials`` for a choice that repeats exactly (same seed, same data, same
choice). Fitted retrievers are cached by (data, name, parameters), so a
pipeline trial costs mostly its ranker.
"""

from recgraph.jobs.tune.fitting import FitCache, Validation, carve_validation, fingerprint
from recgraph.jobs.tune.results import Trial, TuneResult, write_pipeline
from recgraph.jobs.tune.search import TuneSettings, tune_pipeline, tune_question
from recgraph.jobs.tune.spaces import SPACES, default_retrievers, validation_method

__all__ = [
    "SPACES",
    "FitCache",
    "Trial",
    "TuneResult",
    "TuneSettings",
    "Validation",
    "carve_validation",
    "default_retrievers",
    "fingerprint",
    "tune_pipeline",
    "tune_question",
    "validation_method",
    "write_pipeline",
]
