#!/usr/bin/env bash
# Creates .venv/ in the repository and installs florence into it (editable) with the test and
# deepspeed extras.
# Idempotent: a second run only checks what is installed. Torch comes from the pinned release
# (on this project's machines pip finds it on local disk; elsewhere it downloads the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[test,deepspeed]" > .venv/install.log 2>&1; then
  tail -n 40 .venv/install.log; echo "install failed: full log in .venv/install.log" >&2; exit 1
fi
.venv/bin/python -c "import florence, torch, timm, transformers; print('florence installed: torch', torch.__version__, '| transformers', transformers.__version__, '| timm', timm.__version__)"
