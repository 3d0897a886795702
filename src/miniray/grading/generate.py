"""Student copies generated from the reference solutions (STYLE 17).

    solutions/NN_topic.ipynb ──student_notebook──► NN_topic.ipynb
        ### BEGIN SOLUTION                               raise NotImplementedError("Task N.M")
        <reference code>                  ───────►      (at the BEGIN marker's indentation)
        ### END SOLUTION

The task named in the stub is the one written after the marker (``### BEGIN SOLUTION Task 1.2``) or,
more usually, the last "Task N.M" heading above the cell.  Outputs and execution counts are cleared and
``metadata.miniray.exercise`` records which graded tests apply, so a renamed copy still grades.  The
output is byte-for-byte deterministic: the committed student copies are checked against it.

Usage::

    python -m miniray.grading.generate            # rewrite notebooks/exercises/*.ipynb
    python -m miniray.grading.generate --check    # exit 1 when a committed copy is stale
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from miniray.grading.notebook import TASK_ID, cells, read_notebook

BEGIN = re.compile(r"^(?P<indent>[ \t]*)###\s*BEGIN SOLUTION\b(?P<rest>.*)$")
END = re.compile(r"^[ \t]*###\s*END SOLUTION\b")
EXERCISES = Path(__file__).resolve().parents[3] / "notebooks" / "exercises"


class MarkerError(ValueError):
    """Solution markers that do not pair up, or a stub with no task to name."""


def strip_solutions(source: str, task: str | None, where: str = "cell") -> str:
    """Replace every marked region of ``source`` with a stub that raises NotImplementedError."""
    out: list[str] = []
    inside = False
    for n, line in enumerate(source.splitlines(keepends=True), 1):
        begin = BEGIN.match(line.rstrip("\r\n"))
        if begin:
            if inside:
                raise MarkerError(f"{where}, line {n}: BEGIN SOLUTION inside another solution")
            inside = True
            named = TASK_ID.search(begin.group("rest"))
            stub_task = named.group(1) if named else task
            if stub_task is None:
                raise MarkerError(f"{where}, line {n}: no 'Task N.M' heading above this solution")
            out.append(f'{begin.group("indent")}raise NotImplementedError("Task {stub_task}")\n')
        elif END.match(line):
            if not inside:
                raise MarkerError(f"{where}, line {n}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION is never closed by END SOLUTION")
    text = "".join(out)
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


def student_notebook(solution: dict, exercise: str) -> dict:
    """The student version of a solution notebook (a new dict; the input is left alone)."""
    nb = copy.deepcopy(solution)
    for cell, info in zip(nb["cells"], cells(solution)):
        if cell.get("cell_type") == "code":
            src = strip_solutions(info.source, info.task, f"cell {info.index}")
            cell["source"] = src.splitlines(keepends=True)
            cell["outputs"] = []
            cell["execution_count"] = None
        elif "BEGIN SOLUTION" in info.source:
            src = strip_solutions(info.source, info.task, f"cell {info.index}")
            cell["source"] = src.splitlines(keepends=True)
    nb.setdefault("metadata", {}).setdefault("miniray", {})["exercise"] = exercise
    return nb


def dumps(nb: dict) -> str:
    """Notebook JSON the way Jupyter writes it (one-space indent, sorted keys, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def generate(solution_path: str | Path, out_dir: str | Path | None = None) -> tuple[Path, str]:
    """The student copy's path and text for one solution notebook (nothing is written)."""
    solution_path = Path(solution_path)
    out_dir = Path(out_dir) if out_dir else solution_path.resolve().parent.parent
    text = dumps(student_notebook(read_notebook(solution_path), solution_path.stem))
    return out_dir / solution_path.name, text


def stale(exercises: Path = EXERCISES) -> list[Path]:
    """Student copies that differ from what the generator makes of the solutions."""
    out = []
    for sol in sorted((exercises / "solutions").glob("*.ipynb")):
        path, text = generate(sol, exercises)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniray.grading.generate", description=__doc__.split("\n")[0])
    parser.add_argument("solutions", nargs="*", help="solution notebooks (default: all of exercises/solutions)")
    parser.add_argument("--out", help="folder for the student copies (default: the solutions' parent)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a copy is stale")
    args = parser.parse_args(argv)
    sols = [Path(s) for s in args.solutions] or sorted((EXERCISES / "solutions").glob("*.ipynb"))
    bad = 0
    for sol in sols:
        try:
            path, text = generate(sol, args.out)
        except MarkerError as err:
            print(f"{sol}: {err}", file=sys.stderr)
            bad += 1
            continue
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            print(f"{path} is stale: run python -m miniray.grading.generate", file=sys.stderr)
            bad += 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
