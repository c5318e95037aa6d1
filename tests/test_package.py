"""Installed layout: plugins and tasks live under the florence namespace; the demo runs offline."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_generic_top_level_names():
    # run outside the repository so the checkout itself is not on sys.path
    code = ("import importlib.util, florence.plugins, florence.tasks;"
            "print(importlib.util.find_spec('tasks'), importlib.util.find_spec('plugins'))")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None"]


def test_builtin_tasks_load_through_entry_points():
    from florence.plugins import ENTRY_POINT_GROUP, plugin_manager

    pm, errors = plugin_manager()
    assert ENTRY_POINT_GROUP == "florence.tasks" and errors == []
    builtin = {name for name, plugin in pm.list_name_plugin() if plugin.__name__.startswith("florence.tasks.")}
    assert builtin == {"captioning", "ocr", "detection", "grounding", "segmentation", "region", "vqa"}


def test_demo_runs_offline(capsys):
    spec = importlib.util.spec_from_file_location("demo", ROOT / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main(["--max-new-tokens", "5", "--num-beams", "2"])
    out = capsys.readouterr().out
    assert "result     : {'<CAPTION>': " in out and "time       :" in out


def test_setup_installs_every_package_of_the_source_tree(monkeypatch):
    """``pip install .`` (not editable) copies only the packages setup.py lists: every folder of
    florence/ with an ``__init__.py`` must be one of them (florence/accel once was not)."""
    import runpy

    import setuptools

    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: seen.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "florence").rglob("__init__.py")}
    assert "florence.accel" in on_disk and on_disk <= set(seen["packages"]), on_disk - set(seen["packages"])
    assert {"florence.plugins", "florence.tasks"} <= set(seen["packages"])
