#!/usr/bin/env bash
# Run the whole test suite (after scripts/setup.sh). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2-thread torch collapses when the machine is busy
exec .venv/bin/python -m pytest "$@"
