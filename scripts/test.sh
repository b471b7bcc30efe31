#!/usr/bin/env bash
# Set-up and the whole test suite, as CI runs it:  bash scripts/test.sh [extra pytest arguments]
# Builds (or reuses) .venv from the repository's own files, then runs pytest on CPU. No network beyond PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
# The tests select the CPU platform per subprocess; some check that nothing loads without it.
unset VERL_PLATFORM
exec .venv/bin/python -m pytest "$@"
