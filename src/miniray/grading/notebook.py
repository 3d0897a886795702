"""Reading exercise notebooks: code cells, the task each cell belongs to, and the names it defines.

    NN_topic.ipynb ──read_notebook──► [Cell(index, kind, source, task)] ──python_source──► exec-able text
                                          │
                                          └──defined_names──► {"count_words", "Counter", ...}

A cell's *task* is the last "Task N.M" heading seen in a markdown cell above it (STYLE 17), so the
grader can say "the cell of Task 1.2 raised ..." without the cells carrying extra metadata.

Notebooks are read as plain JSON (nbformat 4), so grading needs neither nbformat nor a kernel.  Line
magics (``%time x``) and shell escapes (``!ls``) are replaced by ``pass``; a cell magic such as
``%%time`` or ``%%taskgraph`` runs its body as plain Python, and cell magics that hold no Python
(``%%bash``, ``%%html`` ...) are skipped.  The graded parts of an exercise never depend on a magic.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

TASK_HEADING = re.compile(r"^#+\s.*?\bTask\s+(\d+\.\d+)\b", re.MULTILINE)
TASK_ID = re.compile(r"\bTask\s+(\d+\.\d+)\b")
NOT_PYTHON_MAGICS = {"bash", "sh", "script", "html", "HTML", "markdown", "javascript", "js", "latex",
                     "svg", "writefile", "perl", "ruby", "sx", "system"}


@dataclass
class Cell:
    index: int          # position among all cells of the notebook, 0-based
    kind: str           # "code" | "markdown" | "raw"
    source: str
    task: str | None    # "1.2" for cells under a "Task 1.2" heading
    tags: tuple = ()    # the cell's metadata tags ("miniray-only" cells are left out on Ray)


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def read_notebook(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if nb.get("nbformat") != 4:
        raise ValueError(f"{path}: expected a Jupyter notebook in nbformat 4")
    return nb


def cells(nb: dict) -> list[Cell]:
    """Every cell with the task heading it sits under."""
    out: list[Cell] = []
    task = None
    for i, c in enumerate(nb.get("cells", [])):
        src = cell_source(c)
        if c.get("cell_type") == "markdown":
            found = TASK_HEADING.findall(src)
            if found:
                task = found[-1]
        out.append(Cell(i, c.get("cell_type", "code"), src, task,
                        tuple(c.get("metadata", {}).get("tags", []))))
    return out


def exercise_name(nb: dict, path: str | Path) -> str:
    """The exercise a notebook answers: ``metadata.miniray.exercise``, else its file name's stem."""
    name = nb.get("metadata", {}).get("miniray", {}).get("exercise")
    return name or Path(path).stem


def python_source(src: str) -> str | None:
    """The cell as plain Python (see the module docstring), or None when it holds no Python."""
    lines = src.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("%%"):
        magic = first.strip()[2:].split()[0] if first.strip()[2:] else ""
        if magic in NOT_PYTHON_MAGICS:
            return None
        lines = lines[lines.index(first) + 1:]
    out = []
    for ln in lines:
        stripped = ln.lstrip()
        if stripped.startswith(("%", "!")):
            indent = ln[: len(ln) - len(stripped)]
            out.append(f"{indent}pass  # {stripped}")
        else:
            out.append(ln)
    return "\n".join(out) + "\n"


def defined_names(code: str) -> set[str]:
    """Names a cell binds at top level: defs, classes, assignments, imports."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names
