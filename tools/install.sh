#!/usr/bin/env bash
# Creates .venv/ in the repository and installs florence into it (editable): by default what the main
# job needs (model, training, evaluation); the extras only when asked for:
#   bash tools/install.sh               # core: train, evaluate, infer (a few minutes on a fresh machine)
#   bash tools/install.sh --deepspeed   # + DeepSpeed ZeRO (configs with a `strategy`)
#   bash tools/install.sh --downstream  # + mmdet / mmseg (configs/downstream/; builds mmcv's wheel once)
#   bash tools/install.sh --onnx        # + onnx / onnxruntime (florence export-onnx, backend="onnxruntime")
#   bash tools/install.sh --serve       # + LitServe / FastAPI / uvicorn (florence serve)
#   bash tools/install.sh --docs        # + mkdocs (Material, mkdocstrings): the site in docs/, mkdocs serve
#   bash tools/install.sh --ray         # + Ray Data (florence label --engine ray)
#   bash tools/install.sh --test        # + the test suite's own dependencies; with node/npm on the machine,
#                                       #   transformers.js for the ONNX folder test (tests/deploy/js, no download step);
#                                       #   with apt-get as root, Debian's Chromium for the serve page's browser test
#   bash tools/install.sh --all         # all of the above: what the tests exercise (the README's test command, CI)
# Idempotent: a second run only checks what is installed. Torch comes from the pinned release
# (on this project's machines pip finds it on local disk; elsewhere it downloads the wheel).
#
# The downstream extra needs mmcv 2.1.0 with its compiled ops (mmdet 3.3 / mmseg 1.2 require
# mmcv < 2.2), and PyPI has only mmcv's source. The first --downstream run builds its wheel against the
# installed torch (~17-21 min on 2 cores, measured) into a cache directory outside the repository,
# ONCE; later runs, and fresh clones on the same machine, install that wheel in seconds:
#   ${FLORENCE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/florence/wheels}/torch-<version>-py<version>/
# FLORENCE_DOWNSTREAM=0 skips the downstream extra even with --downstream / --all.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=() downstream=0 js=0
for arg in "$@"; do
  case "$arg" in
    --deepspeed) extras+=(deepspeed) ;;
    --downstream) downstream=1 ;;
    --onnx) extras+=(onnx) ;;
    --serve) extras+=(serve) ;;
    --docs) extras+=(docs) ;;
    --ray) extras+=(ray) ;;
    --test) extras+=(test) js=1 ;;
    --all) extras+=(test deepspeed onnx serve docs ray) downstream=1 js=1 ;;
    -h|--help) sed -n '2,14p' "$0" | cut -c3-; exit 0 ;;
    *) echo "tools/install.sh: unknown option $arg (valid: --deepspeed --downstream --onnx --serve --docs --ray --test --all)" >&2
       exit 2 ;;
  esac
done
if [ "${FLORENCE_DOWNSTREAM:-1}" = 0 ]; then downstream=0; fi
spec() {  # ".[a,b]" for the chosen extras (and $1 if given), "." for none
  local all=("${extras[@]}" "$@")
  if [ ${#all[@]} -eq 0 ]; then echo "."; else local IFS=,; echo ".[${all[*]}]"; fi
}
PY=${PYTHON:-python3}
MMCV_VERSION=2.1.0
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
: > .venv/install.log
pip_install() {  # quiet unless it fails
  if ! .venv/bin/python -m pip install --disable-pip-version-check "$@" >> .venv/install.log 2>&1; then
    tail -n 40 .venv/install.log; echo "install failed: full log in .venv/install.log" >&2; exit 1
  fi
}

build_mmcv_wheel() {  # $1: the folder the wheel goes to
  local tmp src wheel
  tmp=$(mktemp -d)
  src="$tmp/mmcv-$MMCV_VERSION"
  echo "building the mmcv $MMCV_VERSION wheel (compiles its C++ ops, once per torch version: ~17-21 min on 2 cores)" \
       "into $1; log: .venv/mmcv-build.log"
  : > .venv/mmcv-build.log
  (  # progress once a minute: ninja's latest [compiled/total] count from the build log
    start=$SECONDS
    while sleep 60; do
      n=$(grep -aoE '\[[0-9]+/[0-9]+\] ' .venv/mmcv-build.log | tail -n 1 | tr -d ' ' || true)
      echo "  mmcv build: ${n:-[preparing]} files compiled, $(( (SECONDS - start) / 60 )) min so far"
    done
  ) &
  local progress=$!
  trap "kill $progress 2> /dev/null || true" EXIT  # also when the install is interrupted
  # mmcv's setup.py imports pkg_resources, which setuptools 81 removed: an older setuptools for this
  # build only (first on PYTHONPATH); ninja from .venv/bin builds MAX_JOBS files at a time.
  # mmcv compiles with -std=c++17, but torch 2.14's headers need C++20. CPU ops only
  # (FORCE_CUDA=1 with nvcc on PATH builds the CUDA ops too); mmcv's own default is >= 4 jobs.
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --target "$tmp/build" "setuptools<81" ninja &&
         PYTHONPATH="$tmp/build" .venv/bin/python -m pip download --disable-pip-version-check --no-deps \
           --no-binary :all: --no-build-isolation -d "$tmp" "mmcv==$MMCV_VERSION" &&
         tar -xzf "$tmp/mmcv-$MMCV_VERSION.tar.gz" -C "$tmp" &&
         grep -q "'-std=c++17'" "$src/setup.py" &&
         sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/setup.py" &&
         PATH="$tmp/build/bin:$PWD/.venv/bin:$PATH" PYTHONPATH="$tmp/build" MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" \
           MAX_JOBS="${MAX_JOBS:-$(nproc)}" nice -n "${FLORENCE_BUILD_NICE:-10}" .venv/bin/python -m pip wheel \
           --disable-pip-version-check --no-deps --no-build-isolation -v -w "$tmp/dist" "$src"
       } >> .venv/mmcv-build.log 2>&1; then
    kill "$progress" 2> /dev/null || true
    tail -n 40 .venv/mmcv-build.log; echo "mmcv build failed: full log in .venv/mmcv-build.log" >&2; rm -rf "$tmp"; exit 1
  fi
  kill "$progress" 2> /dev/null || true
  wheel=$(basename "$tmp"/dist/mmcv-"$MMCV_VERSION"-*.whl)
  mkdir -p "$1"
  cp "$tmp/dist/$wheel" "$1/.$wheel.tmp" && mv "$1/.$wheel.tmp" "$1/$wheel"  # atomic: never a half-copied wheel
  rm -rf "$tmp"
}

# this project was once distributed as `florence` (a name PyPI gives to another project): drop that old
# editable install of this checkout, which would otherwise stay beside florence-vision
if .venv/bin/python - "$PWD" <<'PY' 2> /dev/null
import json, sys
from importlib.metadata import distribution
url = json.loads(distribution("florence").read_text("direct_url.json") or "{}").get("url", "")
sys.exit(0 if url == "file://" + sys.argv[1] else 1)
PY
then
  .venv/bin/python -m pip uninstall --disable-pip-version-check -y florence >> .venv/install.log 2>&1
fi
pip_install -e "$(spec)"
if [ "$downstream" = 1 ]; then
  # the wheel links against torch's C++ ABI: one cache folder per torch build and Python version
  build_id=$(.venv/bin/python -c "import sys, torch; print(f'torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}')")
  wheels="${FLORENCE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/florence/wheels}/$build_id"
  mkdir -p "$wheels"
  (
    flock 9  # two installs at once: the second waits for the first one's wheel instead of building its own
    if ! compgen -G "$wheels/mmcv-$MMCV_VERSION-*.whl" > /dev/null; then
      build_mmcv_wheel "$wheels"
    fi
  ) 9> "$wheels/.lock"
  # --only-binary: never fall back to compiling PyPI's mmcv source (a wrong wheel fails here, at once)
  pip_install -e "$(spec downstream)" --find-links "$wheels" --only-binary mmcv
  # mmsegmentation 1.2.2's wheel also installs its own test suite as a top-level `tests` package, which
  # shadows this repository's tests/ (tests/engine/dist_run.py imports tests.engine): remove that copy
  site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  if grep -qs "^tests/__init__.py," "$site"/mmsegmentation-*.dist-info/RECORD; then
    rm -rf "$site/tests"
  fi
fi
.venv/bin/python -c "import florence, torch, timm, transformers; print('florence installed: torch', torch.__version__, '| transformers', transformers.__version__, '| timm', timm.__version__)"
if [ "$downstream" = 1 ]; then
  .venv/bin/python -c "import florence, mmcv.ops, mmdet, mmseg; print('downstream: mmcv', mmcv.__version__, '(compiled ops) | mmdet', mmdet.__version__, '| mmseg', mmseg.__version__)"
fi
# transformers.js (pinned in tests/deploy/js/package.json) for the test that runs our ONNX folders in it.
# --ignore-scripts: its install script downloads from a host these machines cannot reach; the CPU
# onnxruntime binary it needs ships in the npm package. Skipped (the test says so) without npm.
if [ "$js" = 1 ] && command -v npm > /dev/null; then
  if ! (cd tests/deploy/js && npm install --ignore-scripts --no-audit --no-fund --loglevel=error) >> .venv/install.log 2>&1; then
    tail -n 20 .venv/install.log; echo "npm install of transformers.js failed: full log in .venv/install.log" >&2; exit 1
  fi
  echo "transformers.js $(node -p "require('./tests/deploy/js/node_modules/@huggingface/transformers/package.json').version") installed in tests/deploy/js"
fi
# Debian's Chromium for the test that drives florence serve's page (Playwright, pointed at it: Playwright's own
# browser download cannot reach its host from these machines). Skipped (the test says so) without it.
if [ "$js" = 1 ] && [ ! -x /usr/bin/chromium ] && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >> .venv/install.log 2>&1; then
    tail -n 20 .venv/install.log; echo "apt-get install chromium failed: full log in .venv/install.log" >&2; exit 1
  fi
fi
if [ "$js" = 1 ] && [ -x /usr/bin/chromium ]; then
  echo "browser tests: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
fi
