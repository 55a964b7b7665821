"""Shape of the library (issue 13, parts 3 and 6): every function short
enough to read at once, and a trail from each helper a notebook calls back
to that notebook and its report section."""
import ast
import importlib
import inspect
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 80
ALIASES = {"cl": "cifar_lib", "viz": "cifar_lib.viz", "analysis": "cifar_lib.analysis",
           "report": "cifar_lib.report", "slbi": "cifar_lib.slbi"}
CALL = re.compile(r"\b(cl|viz|analysis|report|slbi|study)\.(\w+)\s*\(")


def test_no_function_over_80_lines():
    long = []
    for path in sorted((REPO / "cifar_lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n})")
    assert not long, f"functions over {MAX_LINES} lines: {long}"


def notebook_calls() -> dict:
    """(module, function) -> notebook numbers that call it."""
    out = {}
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        study = re.search(r"from cifar_lib\.studies import (\w+) as study", src)
        aliases = dict(ALIASES, study=f"cifar_lib.studies.{study.group(1)}")
        for alias, name in CALL.findall(src):
            out.setdefault((aliases[alias], name), set()).add(path.name[:2])
    return out


def test_notebook_helpers_name_their_notebook():
    calls = notebook_calls()
    assert len(calls) > 30
    missing = []
    for (module, name), nbs in sorted(calls.items()):
        doc = inspect.getdoc(getattr(importlib.import_module(module), name)) or ""
        if "Used by notebook" not in doc or not any(n in doc for n in nbs):
            missing.append(f"{module}.{name} (notebooks {sorted(nbs)})")
    assert not missing, f"no 'Used by notebook NN' line: {missing}"
