#!/usr/bin/env bash
# Lint and the fast test tier (no GPU, no network); `--all` adds the slow tier (end-to-end
# workflows, Slurm, a browser, multi-process runs: tests/conftest.py). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check am amcli baselines workflow benchmarks tests examples
ruff format --check am amcli baselines workflow benchmarks tests
exec pytest "$@"
