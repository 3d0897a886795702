"""The one-line move to real Ray: run the course's programs and notebooks on either engine.

    python -m miniray.engines run --engine ray notebooks/01_tasks.ipynb examples/seed_examples.py

A lesson is written for ``import miniray as ray``.  Moving it to Ray is that one line, ``import
ray``; this module makes the same move mechanically, so CI can check that every lesson, every
exercise solution and the seed's examples still run on Ray:

    source ──► to_ray() ──► the same code with ``miniray`` names spelt as Ray's
    notebook ──► for_engine(nb, "ray") ──► cells ported; cells tagged ``miniray-only`` left out
                                         └► the list of left-out cells, printed by ``run``

``to_ray`` only renames (``miniray`` → ``ray``, ``miniray.util.dask``'s names to
``ray.util.dask``'s) and drops the seed's empty parentheses (``@ray.remote()``, which miniray
accepts and Ray refuses, becomes ``@ray.remote``): it never changes what a program does.  A cell that shows something only
miniray has (``miniray.util.empty``, ``local_mode``, the typo lesson's hint, miniray's own
benchmarks) carries the tag ``miniray-only`` and a reason in its metadata (``miniray_only:
"why"``); on Ray it is skipped and counted.  A whole lesson that Ray cannot run (Workflows, gone
from Ray after 2.47; RLlib, which needs PyTorch) carries ``miniray_only: "why"`` in the notebook's
own metadata: ``notebook_skip_reason`` gives it, and ``run`` skips the notebook saying so.  The engine comes from ``--engine`` or
``MINIRAY_ENGINE`` (default ``miniray``).  No state: each call reads what it is given.

A fresh Ray for every run: each notebook's kernel and each program runs with ``RAY_TMPDIR`` set
to a new, short temp dir of its own (unless ``RAY_TMPDIR`` is already set), removed afterwards.
Ray's ``ray.init()`` without an address connects to the cluster named in
``<temp dir>/ray/ray_current_cluster`` (left behind by ``ray start`` or ``ray.cluster_utils.Cluster``,
and hanging when that cluster is dead); in an empty temp dir there is none, so it starts a new local
instance even while other programs on the machine run Ray.  Not ``RAY_ADDRESS=local``: Ray's state
API lets ``RAY_ADDRESS`` override the address it is given, so ``ray.util.state`` (the magics, the
grader) would then have to guess among the machine's clusters.  A ``RAY_ADDRESS`` already set (a
Slurm job's cluster) is left as it is.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINES = ("miniray", "ray")
ENGINE_ENV = "MINIRAY_ENGINE"
ONLY_TAG = "miniray-only"
NEEDS_RAY = "real Ray is not installed here: pip install 'ray[default]' (in its own venv)"

# Names that differ between the two, beyond the package itself.
_RENAMES = [
    (r"@(\w+)\.remote\(\s*\)", r"@\1.remote"),    # the seed's @ray.remote(): Ray needs @ray.remote
    (r"\benable_dask_on_miniray\b", "enable_dask_on_ray"),
    (r"\bdisable_dask_on_miniray\b", "disable_dask_on_ray"),
    (r"\bminiray_dask_get\b", "ray_dask_get"),
    (r"\bimport miniray as ray\b", "import ray"),
    (r"\bimport miniray\b(?!_)", "import ray"),
    (r"\bfrom miniray\b(?!_)", "from ray"),
    (r"(?<![\w.])miniray\.(?=[a-z_])", "ray."),
]


def engine_name(name: str | None = None) -> str:
    """``name``, else ``$MINIRAY_ENGINE``, else ``"miniray"``; anything else is an error."""
    chosen = (name or os.environ.get(ENGINE_ENV) or "miniray").strip().lower()
    if chosen not in ENGINES:
        raise ValueError(f"engine {chosen!r}: expected one of {', '.join(ENGINES)} "
                         f"(set {ENGINE_ENV}=ray to run on real Ray)")
    return chosen


def to_ray(source: str) -> str:
    """``source`` with miniray's module names spelt as Ray's (strings and comments too)."""
    for pattern, replacement in _RENAMES:
        source = re.sub(pattern, replacement, source)
    return source


def is_miniray_only(cell) -> bool:
    return ONLY_TAG in cell.get("metadata", {}).get("tags", [])


def notebook_skip_reason(nb, engine: str) -> str | None:
    """Why notebook ``nb`` cannot run on ``engine`` at all (its metadata's ``miniray_only``), or None."""
    if engine_name(engine) == "miniray":
        return None
    return nb.get("metadata", {}).get("miniray_only") or None


def for_engine(nb, engine: str):
    """A copy of notebook ``nb`` ready to run on ``engine``, and the cells left out of it."""
    nb = copy.deepcopy(nb)
    if engine_name(engine) == "miniray":
        return nb, []
    kept, skipped = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and is_miniray_only(cell):
            reason = cell.metadata.get("miniray_only", "shows something only miniray has")
            skipped.append((index, reason))
            continue
        if cell.cell_type == "code":
            cell.source = to_ray(cell.source)
        kept.append(cell)
    nb.cells = kept
    return nb, skipped


@contextlib.contextmanager
def fresh_ray_env(env: dict | None = None):
    """``env`` (default: this process's) with a temp dir of its own for Ray, removed on exit."""
    env = dict(os.environ if env is None else env)
    made = None
    if not env.get("RAY_TMPDIR"):
        made = tempfile.mkdtemp(prefix="mr-ray-", dir="/tmp")   # short: Ray's socket paths must fit
        env["RAY_TMPDIR"] = made
    try:
        yield env
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


def run_notebook(path: Path, engine: str, timeout: float = 300):
    """Execute ``path`` on ``engine`` in a fresh kernel; return (notebook, skipped, seconds).

    Cells tagged ``raises-exception`` may fail; any other failure raises nbclient's error."""
    import nbformat
    from nbclient import NotebookClient

    nb, skipped = for_engine(nbformat.read(path, as_version=4), engine)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    started = time.monotonic()
    with fresh_ray_env() as env:
        client.execute(env=env if engine_name(engine) == "ray" else dict(os.environ))
    return nb, skipped, time.monotonic() - started


def run_script(path: Path, engine: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python program on ``engine`` (its source ported first), capturing its output."""
    source = Path(path).read_text()
    if engine_name(engine) == "ray":
        source = to_ray(source)
    with fresh_ray_env() as env:
        return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                              timeout=timeout, cwd=Path(path).parent,
                              env=env if engine_name(engine) == "ray" else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m miniray.engines",
        description="Run the course's notebooks and programs on miniray or on real Ray.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run notebooks (.ipynb) and programs (.py) top to bottom")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help=f"miniray or ray (default: ${ENGINE_ENV}, else miniray)")
    args = parser.parse_args(argv)
    engine = engine_name(args.engine)
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            print(f"miniray.engines: {NEEDS_RAY}", file=sys.stderr)
            return 2
    failed = 0
    for path in args.paths:
        if path.suffix == ".ipynb":
            import nbformat

            why = notebook_skip_reason(nbformat.read(path, as_version=4), engine)
            if why:
                print(f"skipped {path} on {engine}: {why}")
                continue
            try:
                _, skipped, seconds = run_notebook(path, engine)
            except Exception as exc:  # nbclient's CellExecutionError names the cell
                print(f"FAILED {path} on {engine}: {str(exc)[-2000:]}")
                failed += 1
                continue
            print(f"ok {path} on {engine} in {seconds:.1f} s; {len(skipped)} miniray-only "
                  f"cell(s) skipped" + "".join(f"\n    cell {i}: {why}" for i, why in skipped))
        else:
            proc = run_script(path, engine)
            status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(f"{status} {path} on {engine}")
            if proc.returncode:
                print(proc.stdout[-2000:] + proc.stderr[-2000:])
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
