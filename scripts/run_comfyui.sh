#!/usr/bin/env bash
# Start the ComfyUI at $COMFYUI_PATH (default ~/ComfyUI) with this pack installed in its custom_nodes
# (as a symlink, the same as a git clone there), on http://127.0.0.1:8188. Extra arguments go to main.py.
set -euo pipefail
cd "$(dirname "$0")/.."
COMFYUI_PATH=${COMFYUI_PATH:-$HOME/ComfyUI}
[ -f "$COMFYUI_PATH/main.py" ] || { echo "No ComfyUI at $COMFYUI_PATH: run scripts/setup.sh, or set COMFYUI_PATH to a ComfyUI checkout." >&2; exit 2; }
# A git install already sits in custom_nodes; otherwise link this checkout there (ComfyUI loads it once).
installed=""
for entry in "$COMFYUI_PATH"/custom_nodes/*; do
  [ "$(readlink -f "$entry")" = "$(readlink -f "$PWD")" ] && installed=$entry
done
[ -n "$installed" ] || ln -s "$PWD" "$COMFYUI_PATH/custom_nodes/masactrl_suite"
device=()
python_bin="$PWD/.venv/bin/python"
"$python_bin" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || device=(--cpu)
cd "$COMFYUI_PATH"
exec "$python_bin" main.py "${device[@]}" --listen 127.0.0.1 --port "${PORT:-8188}" "$@"
