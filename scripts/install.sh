#!/usr/bin/env bash
# Installs recgraph with everything its tests and benchmarks use, on a fresh machine.
# torch goes first and pinned: the CPU wheel of torch==2.13.0 lies on this machine, and
# anything that asked for plain "torch" first would pull a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[all]"
python -c "import torch, recgraph; print(f'recgraph {recgraph.__version__} installed (torch {torch.__version__})')"
