"""The lesson notebooks run, say what they teach, and build into decks.

Each ``notebooks/NN_topic.ipynb`` is executed top to bottom in a fresh ``python3`` kernel (nbclient,
the notebook's folder as working directory); only cells tagged ``raises-exception`` may fail.  Then a
few outputs are checked against what the slides promise, the slide count is read from the remark
exporter, and ``miniray slides --execute`` builds every deck into a temporary folder.

The ``python3`` kernel spec runs ``python``, which jupyter_client maps to this interpreter, so the
kernels use the same environment (and the same miniray) as the tests.
"""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIME_LIMIT_S = 90          # each lesson, on 2 cores, from a fresh kernel
CELL_TIMEOUT_S = 120


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()          # starts the kernel, runs every cell, shuts the kernel down
    return nb, time.monotonic() - started


def text_of(cell) -> str:
    """Everything a code cell showed: streams, plain-text results and error messages."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def errors(nb) -> list[tuple[list[str], str]]:
    return [(c.metadata.get("tags", []), f"{o.ename}: {o.evalue}")
            for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def executed():
    """Executed notebooks by stem, filled by test_lesson_runs and read by the output checks."""
    return {}


def test_all_lessons_present():
    assert [p.stem for p in LESSONS] == ["01_tasks", "02_actors", "03_object_store", "04_ray_vs_dask",
                                         "05_multinode_slurm", "06_ecosystem"]


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(path, executed):
    stored = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), \
        f"{path.name} is stored with outputs; regenerate it with notebooks/make_lessons.py"
    nb, seconds = execute(path)
    executed[path.stem] = nb
    unexpected = [e for tags, e in errors(nb) if "raises-exception" not in tags]
    assert not unexpected, f"{path.name}: untagged cells failed: {unexpected}"
    assert seconds < TIME_LIMIT_S, f"{path.name} took {seconds:.0f} s (limit {TIME_LIMIT_S} s)"

    from miniray.slides.exporter import RemarkExporter
    _, resources = RemarkExporter().from_notebook_node(
        nb, resources={"metadata": {"name": path.stem, "path": str(path.parent)}})
    assert 10 <= resources["remark_slide_count"] <= 25, resources["remark_slide_count"]
    sources = "\n".join(c.source for c in nb.cells)
    assert "ray.shutdown()" in nb.cells[-1].source or "ray.shutdown()" in sources
    assert "Recap" in sources and "exercise" in sources.lower()


def lesson(executed, stem):
    if stem not in executed:
        pytest.skip(f"{stem} did not run (see test_lesson_runs)")
    nb = executed[stem]
    return nb, "\n".join(text_of(c) for c in nb.cells if c.cell_type == "code")


def test_tasks_outputs(executed):
    nb, out = lesson(executed, "01_tasks")
    assert "[0, 1, 4, 9]" in out
    assert "caught: RayTaskError(ZeroDivisionError)" in out
    assert "speed-up:" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("finished:")] == \
        ["0.1", "0.4", "0.9"]                           # ray.wait hands them back as they finish
    assert images(nb) >= 2                              # %%taskgraph and %timeline drew


def test_actors_outputs(executed):
    nb, out = lesson(executed, "02_actors")
    assert "[0, 1, 2, 3]" in out and "[2, 3, 4, 5]" in out
    raised = [e for tags, e in errors(nb) if "raises-exception" in tags]
    assert len(raised) == 1 and "muliplier" in raised[0] and "Did you mean: 'multiplier'?" in raised[0]
    assert "['first', 'second', 'third']" in out
    assert "[0, 1, 4, 9, 16, 25, 36, 49]" in out


def test_object_store_outputs(executed):
    nb, out = lesson(executed, "03_object_store")
    assert "same buffer:  True" in out and "writeable:    False" in out
    assert "read-only" in errors(nb)[0][1]
    before, after = [line for line in out.splitlines() if line.startswith(("before:", "after:"))]
    assert int(after.split()[1]) < int(before.split()[1])
    assert "spilled" in out and "spilled: 0 MiB" not in out
    assert "read-only now: True" in out


def test_ray_vs_dask_outputs(executed):
    nb, out = lesson(executed, "04_ray_vs_dask")
    if (ROOT / "benchmarks" / "memory_sharing.py").exists():
        assert "measured just now" in out, out[:2000]
        assert images(nb) >= 1
    assert "miniray.util.dask" in out


def test_slurm_outputs(executed):
    nb, out = lesson(executed, "05_multinode_slurm")
    assert "#SBATCH --nodes=2" in out and "#SBATCH --cpus-per-task=4" in out
    assert out.count("alive") >= 3 and "DEAD" in out        # the live local cluster
    assert "328350" in out                              # job.py ran locally
    assert not (ROOT / "notebooks" / "job.py").exists()


def test_ecosystem_outputs(executed):
    _, out = lesson(executed, "06_ecosystem")
    assert "best lr=0.1, momentum=0.9" in out
    assert "from slow_add(1, 2).json" in out


def test_rllib_outputs(executed):
    nb, out = lesson(executed, "10_rllib")
    curve = [float(line.split()[2]) for line in out.splitlines()
             if line[:1].isdigit() and line.split()[1:2] == ["return"]]
    assert len(curve) >= 3 and curve[-1] > 3 * curve[0], curve      # CartPole's return rose
    assert " steps this time; " in out and "healthy runner(s)" in out   # train() survived the kill
    assert "'action_dist_inputs': (10, 4, 2)" in out and "[2000, 2000] env steps" in out
    assert images(nb) >= 3                                             # two timelines and the curve


def test_slides_build_every_deck(tmp_path, monkeypatch, capsys):
    from miniray.slides import build

    monkeypatch.chdir(ROOT)
    status = build.main(["--execute", "--output-dir", str(tmp_path), "--timeout", str(CELL_TIMEOUT_S)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    for path in LESSONS:
        deck = tmp_path / f"{path.stem}.slides.html"
        assert deck.exists() and deck.stat().st_size > 10_000, printed.out
