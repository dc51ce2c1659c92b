#!/usr/bin/env bash
# Lint and the test suite (no GPU, no network). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check am amcli baselines workflow benchmarks tests examples
ruff format --check am amcli baselines workflow benchmarks tests
exec pytest "$@"
