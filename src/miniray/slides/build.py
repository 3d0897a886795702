"""``miniray slides [--execute] [--check] [--output-dir DIR] [NB...]``: lesson notebooks as decks.

    notebooks/NN_topic.ipynb --(--execute: nbclient, kernel python3, cwd = notebook folder)-->
        executed copy in memory --RemarkExporter--> DIR/NN_topic.slides.html  (default DIR: slides/)
    --check: DIR/NN_topic.slides.html --(headless Chromium at 1280x800, check.py)-->
        problems on stderr, CONTACT_DIR/NN_topic.contact.png (default: a new temporary folder)

``--check`` without ``--execute`` checks the decks already in DIR without rebuilding them.

The source notebooks are stored without outputs and are never written to.  One line is printed per
deck; the exit status is 0 only when every deck was built.  A failing notebook is reported with
the cell that failed, and no deck is written for it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

LESSONS_GLOB = "notebooks/[0-9][0-9]_*.ipynb"
DEFAULT_OUTPUT_DIR = "slides"
DEFAULT_TIMEOUT = 180  # seconds per cell; every lesson runs whole in under 90 s on 2 cores


class BuildError(Exception):
    """One notebook could not be executed or exported; the message says where and why."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="miniray slides",
        description="Build remark.js slide decks (NN_topic.slides.html) from lesson notebooks.")
    p.add_argument("notebooks", nargs="*", metavar="NB",
                   help=f"notebooks to build (default: every {LESSONS_GLOB})")
    p.add_argument("--execute", action="store_true",
                   help="run each notebook top to bottom in a fresh kernel before exporting")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                   help=f"where the decks go (default: {DEFAULT_OUTPUT_DIR}/)")
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per-cell time limit with --execute (default: {DEFAULT_TIMEOUT})")
    p.add_argument("--kernel", default="python3", help="kernel name (default: python3)")
    p.add_argument("--check", action="store_true",
                   help="open every slide in headless Chromium at 1280x800 and fail when content "
                        "overflows, a picture is cut or anything is fetched from the network; "
                        "without --execute, check the decks already in --output-dir")
    p.add_argument("--contact-dir", metavar="DIR", default=None,
                   help="where --check writes one contact sheet PNG per deck (default: a new "
                        "temporary folder, printed)")
    return p


def main(argv: list[str]) -> int:
    """Entry point for ``miniray slides``; returns the process exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0)
    notebooks = [Path(p) for p in args.notebooks] or sorted(Path().glob(LESSONS_GLOB))
    if not notebooks:
        print(f"miniray slides: no notebooks match {LESSONS_GLOB} under {Path.cwd()}. "
              "Run it from the repository root, or name the notebooks to build.", file=sys.stderr)
        return 2
    out_dir = Path(args.output_dir)
    if args.check and not args.execute:
        return check(notebooks, out_dir, args.contact_dir)
    from .exporter import BUNDLED_REMARK_JS, ENV_VAR, NO_REMARK_WARNING, RemarkExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = RemarkExporter()
    try:
        offline = bool(exporter._remark_script()["js_path"])
    except FileNotFoundError as exc:  # $MINIRAY_REMARK_JS names a file that is not there
        print(f"miniray slides: {exc}", file=sys.stderr)
        return 2
    if not offline:
        print(NO_REMARK_WARNING % (exporter.remark_cdn_url, BUNDLED_REMARK_JS, ENV_VAR),
              file=sys.stderr, flush=True)
    failed = 0
    for nb_path in notebooks:
        try:
            print(build_one(nb_path, out_dir, exporter, execute=args.execute,
                            timeout=args.timeout, kernel=args.kernel), flush=True)
        except BuildError as exc:
            failed += 1
            print(f"FAILED {nb_path}: {exc}", file=sys.stderr, flush=True)
    if failed:
        print(f"miniray slides: {failed} of {len(notebooks)} notebooks failed; "
              "their decks were not written.", file=sys.stderr)
        return 1
    return check(notebooks, out_dir, args.contact_dir) if args.check else 0


def check(notebooks: list[Path], out_dir: Path, contact_dir: str | None) -> int:
    """Check the decks of ``notebooks`` in ``out_dir``; print one line per deck and each problem."""
    import tempfile

    from .check import CheckError, check_decks

    decks = [out_dir / f"{nb.stem}.slides.html" for nb in notebooks]
    missing = [d for d in decks if not d.is_file()]
    if missing:
        print(f"miniray slides --check: no deck {missing[0]}: build the decks first "
              f"(miniray slides --execute --output-dir {out_dir}), or add --execute.",
              file=sys.stderr)
        return 2
    sheets = Path(contact_dir) if contact_dir else Path(tempfile.mkdtemp(prefix="miniray-contact-"))
    try:
        results = check_decks(decks, sheets)
    except CheckError as exc:
        print(f"miniray slides --check: {exc}", file=sys.stderr)
        return 2
    bad = 0
    for deck, problems in results.items():
        sheet = sheets / f"{deck.name.removesuffix('.slides.html')}.contact.png"
        print(f"{'ok    ' if not problems else 'FAILED'} {deck} (contact sheet: {sheet})", flush=True)
        for problem in problems:
            print(f"    {problem}", file=sys.stderr)
        bad += bool(problems)
    if bad:
        print(f"miniray slides --check: {bad} of {len(results)} decks do not fit a projector; "
              "look at their contact sheets.", file=sys.stderr)
    return 1 if bad else 0


def build_one(nb_path: Path, out_dir: Path, exporter, *, execute: bool = False,
              timeout: int = DEFAULT_TIMEOUT, kernel: str = "python3") -> str:
    """Build one deck and return the line that reports it; raise BuildError on failure."""
    import nbformat

    started = time.monotonic()
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read the notebook ({exc})") from exc
    folder = str(nb_path.resolve().parent)
    if execute:
        execute_notebook(nb, folder, timeout=timeout, kernel=kernel)
    resources = {"metadata": {"name": nb_path.stem, "path": folder}}
    try:
        body, resources = exporter.from_notebook_node(nb, resources=resources)
    except Exception as exc:  # a template or filter error: name the notebook, keep going
        raise BuildError(f"export failed: {type(exc).__name__}: {exc}") from exc
    target = out_dir / f"{nb_path.stem}{exporter.file_extension}"
    partial = target.with_name(target.name + ".part")
    partial.write_text(body, encoding="utf-8")
    os.replace(partial, target)
    slides = resources.get("remark_slide_count", 0)
    ran = f", executed in {time.monotonic() - started:.1f} s" if execute else ""
    plural = "" if slides == 1 else "s"
    return f"built {target} ({slides} slide{plural}, {len(body) / 1e6:.1f} MB{ran})"


def execute_notebook(nb, folder: str, *, timeout: int, kernel: str) -> None:
    """Run ``nb`` in place in a fresh kernel whose cwd is ``folder``; raise BuildError on failure.

    Cells tagged ``raises-exception`` may fail on purpose (nbclient lets them).  The kernel is
    shut down whatever happens.
    """
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    current = {"index": None}

    def on_cell_execute(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": folder}},
                            # IPython kernels: keep the TCP notice out of the build's output
                            extra_arguments=(["--IPKernelApp.log_level=ERROR"]
                                             if kernel.startswith("python") else []),
                            on_cell_execute=on_cell_execute)
    try:
        client.execute()
    except CellTimeoutError as exc:
        raise BuildError(f"{_cell_name(nb, current['index'])} ran past the {timeout} s cell "
                         "time limit (raise it with --timeout)") from exc
    except CellExecutionError as exc:
        raise BuildError(f"{_cell_name(nb, current['index'])} raised {exc.ename}: "
                         f"{exc.evalue}") from exc
    except DeadKernelError as exc:
        raise BuildError(f"the kernel died while running {_cell_name(nb, current['index'])}"
                         ) from exc
    except NoSuchKernel as exc:
        raise BuildError(f"no Jupyter kernel named {kernel!r}: install one with "
                         "`python -m ipykernel install --user`, or pass --kernel") from exc


def _cell_name(nb, index) -> str:
    """'cell 7 (`first line of its source`)', numbering cells from 1 as notebooks show them."""
    if index is None:
        return "the kernel start"
    first = next((ln.strip() for ln in nb.cells[index].source.splitlines() if ln.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"cell {index + 1} (`{first}`)"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
