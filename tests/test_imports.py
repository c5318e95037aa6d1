"""The import graph of the installed package (florence/) has no cycle: every import counts, module-level or inside a function, and importing
``a.b.c`` also runs the ``a`` and ``a.b`` package files (except the importer's own packages, which
are already running)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"florence": ROOT / "florence"}


def modules() -> dict:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: dict) -> set:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets.add(base)
            targets.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    edges = set()
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # already importing
    for t in targets:
        parts = t.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run too
            mod = ".".join(parts[:i])
            if mod in known and mod != name and mod not in own:
                edges.add(mod)
    return edges


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    assert "florence.models.files" in imports_of("florence.checkpoint", known["florence.checkpoint"], known)
    # importing florence.models.config from outside runs florence/models/__init__.py too
    assert "florence.models" in imports_of("florence.checkpoint", known["florence.checkpoint"], known)


def test_no_import_cycle():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(
        " | ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found)


def test_the_model_never_imports_how_it_runs():
    """florence.models (what Florence-2 is) reaches neither florence.accel (how it runs fast) nor the
    layers that use the model (generation, inference, engine), directly or through other modules."""
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    for start in [m for m in known if m == "florence.models" or m.startswith("florence.models.")]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        above = sorted(m for m in seen if m.split(".")[1] in ("accel", "generation", "inference", "engine"))
        assert not above, f"{start} imports {above}"
    assert "florence.accel" in graph["florence.inference"]  # the check follows real edges


def test_import_florence_loads_no_model_code_and_listing_tasks_no_torch():
    """``import florence`` and the task registry (what ``florence tasks`` needs) leave timm,
    transformers' model code, torch and pycocotools unimported; the public names still work."""
    import subprocess
    import sys

    code = """
import re, sys
def heavy():
    return sorted({m.split(".")[0] if not m.startswith("transformers") else m for m in sys.modules
                   if m.split(".")[0] in ("timm", "torch", "pycocotools", "mmengine", "deepspeed")
                   or re.match(r"transformers\\.models\\.[^.]+\\.modeling_", m)})
import florence
print(heavy())
florence.list_tasks(), florence.get_metric("cider"), florence.get_task("<OD>").prompt()
print(heavy())
print(florence.Florence2ForConditionalGeneration.__name__, "pipeline" in dir(florence))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    after_import, after_tasks, names = out.stdout.strip().splitlines()
    assert after_import == "[]" and after_tasks == "[]", out.stdout
    assert names == "Florence2ForConditionalGeneration True"


def test_no_deepspeed_warning_when_deepspeed_is_not_used():
    """With DeepSpeed installed, mmengine's runner imports it, and DeepSpeed warns about its
    accelerator on a machine without a GPU; importing florence first drops that message."""
    import importlib.util
    import subprocess
    import sys

    import pytest

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (bash tools/install.sh --deepspeed): nothing can warn")
    import torch

    if torch.cuda.is_available():
        pytest.skip("DeepSpeed finds the GPU here and does not warn")

    def output(code):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout + out.stderr

    assert "Setting accelerator to CPU" in output("import mmengine.runner")  # the warning exists
    assert "Setting accelerator to CPU" not in output("import florence, mmengine.runner, florence.engine")
