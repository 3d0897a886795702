"""The import contract: layers bottom up, the core never imports the libraries, nothing imports the
magics, and ``import miniray`` stays light (docs/architecture.md, issue #22).

The contract itself is ``.importlinter`` at the repo root; these tests run import-linter on it in a
fresh interpreter pointed at this checkout, then break a copy of the tree on purpose to show that
each contract catches a new lower-to-higher import.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
HEAVY = ("miniray_magics", "pandas", "pyarrow", "gymnasium", "matplotlib", "IPython")


def lint(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on ``tree`` (its src/ and magics/), in a fresh interpreter, no cache files."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree / "src"), str(tree / "magics")]))
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--config", str(tree / ".importlinter")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(CONFIG)
    return parser


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "miniray", tree / "src" / "miniray", ignore=skip)
    shutil.copytree(ROOT / "magics" / "miniray_magics", tree / "magics" / "miniray_magics", ignore=skip)
    shutil.copy(CONFIG, tree / ".importlinter")
    return tree


def add_import(path: Path, statement: str) -> None:
    """A new import inside a function at the end of ``path`` (lazy, as most of the breaks are)."""
    with open(path, "a") as f:
        f.write(f"\n\ndef _layer_break_for_the_test():\n    {statement}\n")


def test_the_import_contracts_hold():
    sections = [s for s in contracts().sections() if s.startswith("importlinter:contract:")]
    assert len(sections) == 3, sections
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(sections)} kept, 0 broken." in out.stdout, out.stdout


BREAKS = [
    # (a module of the tree, the import added to it, the contract it breaks, the chain reported)
    ("transport/messages.py", "from miniray import runtime",
     r"Layers: a lower layer never imports a higher one BROKEN",
     "miniray.transport is not allowed to import miniray.runtime"),
    ("scheduler/state.py", "import miniray.data",
     r"The core never imports the libraries BROKEN", "miniray.scheduler.state -> miniray.data"),
    ("util/queue.py", "import miniray_magics",
     r"imports the magics, except\s+miniray.load_ipython_extension BROKEN", "miniray.util.queue -> miniray_magics"),
]


@pytest.mark.parametrize("module, statement, contract, chain", BREAKS, ids=["layers", "libraries", "magics"])
def test_a_new_break_fails_its_contract(tmp_path, module, statement, contract, chain):
    tree = copy_tree(tmp_path)
    data = tree / "src/miniray/data"
    if "miniray.data" in statement and not data.exists():    # a library still being written:
        data.mkdir()                                          # the contract names it already
        (data / "__init__.py").write_text('"""A stand-in for miniray.data."""\n')
    add_import(tree / "src/miniray" / module, statement)
    out = lint(tree)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(contract, out.stdout), out.stdout
    assert chain in out.stdout, out.stdout


def test_import_miniray_stays_light():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "magics")]))
    code = ("import json, sys, miniray; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout


def test_every_known_layer_break_is_documented():
    """The ignored imports of the layers contract are exactly the doc's list of known breaks."""
    ignored = {line.strip() for line in contracts()["importlinter:contract:layers"]["ignore_imports"].splitlines()
               if line.strip()}
    doc = (ROOT / "docs/architecture.md").read_text()
    section = doc.split("## Known layer breaks (issue #22)", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(miniray[\w.]* -> miniray[\w.]*)`", section))
    assert ignored == listed, (sorted(ignored - listed), sorted(listed - ignored))
