#!/usr/bin/env bash
# The reproduction's data, as verl parquet with the paper's system prompt (data_prep/prepare.py), into DATA_DIR:
# open_rs.parquet (training) and aime2024, aime2025, amc2023, math500 (.parquet; validation and evaluation) -- the
# files train.sh and eval.sh read by default.
#
#   bash scripts/repro/prepare_data.sh                      # from the hub
#   HUB_COPY_DIR=/copies bash scripts/repro/prepare_data.sh  # from local copies laid out like the hub: /copies/<name>
set -xeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HUB_COPY_DIR=${HUB_COPY_DIR:-}
for name in open_rs aime2024 aime2025 amc2023 math500; do
  "$PYTHON" "$REPO_ROOT/data_prep/prepare.py" "$name" --out-dir "$DATA_DIR" \
    ${HUB_COPY_DIR:+--local-path "$HUB_COPY_DIR/$name"}
done
