#!/usr/bin/env bash
# Creates .venv/ in the repository and installs florence into it (editable) with the test,
# deepspeed and downstream (mmdet / mmseg) extras.
# Idempotent: a second run only checks what is installed. Torch comes from the pinned release
# (on this project's machines pip finds it on local disk; elsewhere it downloads the wheel).
#
# The downstream extra needs mmcv 2.1.0 with its compiled ops (mmdet 3.3 / mmseg 1.2 require
# mmcv < 2.2), and PyPI has only mmcv's source. The first run builds its wheel against the installed
# torch (6 min on 2 idle cores, measured; 32 min when the cores were shared) into a cache directory outside the repository, ONCE; later runs, and
# fresh clones on the same machine, install that wheel in seconds:
#   ${FLORENCE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/florence/wheels}/torch-<version>-py<version>/
# Set FLORENCE_DOWNSTREAM=0 to skip the downstream extra (and the build) altogether.
set -euo pipefail
cd "$(dirname "$0")/.."
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
  echo "building the mmcv $MMCV_VERSION wheel (compiles its C++ ops, once per torch version: ~6-30 min on 2 cores)" \
       "into $1; log: .venv/mmcv-build.log"
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
           --disable-pip-version-check --no-deps --no-build-isolation -w "$tmp/dist" "$src"
       } > .venv/mmcv-build.log 2>&1; then
    tail -n 40 .venv/mmcv-build.log; echo "mmcv build failed: full log in .venv/mmcv-build.log" >&2; rm -rf "$tmp"; exit 1
  fi
  wheel=$(basename "$tmp"/dist/mmcv-"$MMCV_VERSION"-*.whl)
  mkdir -p "$1"
  cp "$tmp/dist/$wheel" "$1/.$wheel.tmp" && mv "$1/.$wheel.tmp" "$1/$wheel"  # atomic: never a half-copied wheel
  rm -rf "$tmp"
}

pip_install -e ".[test,deepspeed]"
if [ "${FLORENCE_DOWNSTREAM:-1}" != 0 ]; then
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
  pip_install -e ".[test,deepspeed,downstream]" --find-links "$wheels" --only-binary mmcv
  # mmsegmentation 1.2.2's wheel also installs its own test suite as a top-level `tests` package, which
  # shadows this repository's tests/ (tests/engine/dist_run.py imports tests.engine): remove that copy
  site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  if grep -qs "^tests/__init__.py," "$site"/mmsegmentation-*.dist-info/RECORD; then
    rm -rf "$site/tests"
  fi
fi
.venv/bin/python -c "import florence, torch, timm, transformers; print('florence installed: torch', torch.__version__, '| transformers', transformers.__version__, '| timm', timm.__version__)"
if [ "${FLORENCE_DOWNSTREAM:-1}" != 0 ]; then
  .venv/bin/python -c "import mmcv.ops, mmdet, mmseg; print('downstream: mmcv', mmcv.__version__, '(compiled ops) | mmdet', mmdet.__version__, '| mmseg', mmseg.__version__)"
fi
