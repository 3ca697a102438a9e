#!/usr/bin/env bash
# Install seewhy with every extra into .venv, then run the whole test suite and the linters.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
PIP=".venv/bin/pip"
"$PIP" install -q --upgrade pip
# torch first, pinned: this machine serves that build from disk (a newer one would be a
# multi-GB download)
"$PIP" install -q torch==2.14.1 torchvision==0.29.1
"$PIP" install -q -e ".[all,dev,test]"
# keras-hub (tests/test_keras_hub.py) without its dependencies: they would pull tensorflow-text
# and the full tensorflow beside tensorflow_cpu; its vision models need none of them
"$PIP" install -q --no-deps keras-hub==0.32.0
if [ -x scripts/install-system-deps.sh ]; then scripts/install-system-deps.sh; fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
# one torch/BLAS thread per process: the suite runs on small shared CPUs where 2 threads thrash
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q "$@"
