"""The documentation: ``mkdocs build --strict`` passes (no broken link or anchor, every docstring of
the API pages parses), every name the API pages show has a docstring, and the README's links lead to
files that exist."""
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (bash tools/install.sh --docs)")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("florence.engine.jobs.train", "florence.task.base.Task.regions", "florence.inference.Pipeline.records"):
        assert f'id="{name}"' in api, name


def _api_entries():
    """(module, [member names] or None) of each ``::: module`` block of docs/api.md."""
    text = (ROOT / "docs" / "api.md").read_text()
    for module, options in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, re.M):
        members = re.search(r"members: \[(.*)\]", options)
        yield module, [m.strip() for m in members.group(1).split(",")] if members else None


def test_every_name_on_the_api_pages_is_documented():
    undocumented = []
    for module_name, members in _api_entries():
        module = importlib.import_module(module_name)
        names = members or [n for n in getattr(module, "__all__", []) if callable(getattr(module, n, None))]
        assert module.__doc__, module_name
        for name in names:
            obj = getattr(module, name)  # a listed name that does not exist fails here
            if not (obj.__doc__ or "").strip() or (isinstance(obj, type) and obj.__doc__ is type.__doc__):
                undocumented.append(f"{module_name}.{name}")
            for attr, value in vars(obj).items() if isinstance(obj, type) else ():
                # an override may inherit its base's docstring (as the API pages show it)
                if not attr.startswith("_") and callable(value) and not inspect.getdoc(getattr(obj, attr)):
                    undocumented.append(f"{module_name}.{name}.{attr}")
    assert not undocumented, undocumented


def test_the_readme_links_lead_to_files():
    readme = (ROOT / "README.md").read_text()
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link]
    assert links and all((ROOT / link).exists() for link in links if link), links
    assert len(readme.splitlines()) < 80  # the first screen, the tour and the links; the manual is in docs/
