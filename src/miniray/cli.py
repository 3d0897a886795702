"""The ``miniray`` command: one verb per job, each handed to the module that does it.

    miniray slurm script|submit|up ...   Slurm launcher            (launchers/slurm.py)
    miniray slides [--execute] [NB...]   build lesson decks        (slides/build.py)
    miniray grade NOTEBOOK               grade an exercise         (grading/cli.py)
    miniray microbenchmark [--quick]     side-by-side benchmarks   (bench/microbenchmark.py)
    miniray memory                       the object store's objects, as a table
    miniray start/stop/status            multi-node clusters (not yet available)
"""
from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n", 1)[1]


def _memory(argv) -> int:
    import miniray
    from miniray.util import state
    if not miniray.is_initialized():
        print("miniray memory: no runtime is running in this process. A local runtime lives inside its "
              "driver: call miniray.util.state.memory_summary() from your program or notebook "
              "(or use %memory). Cluster-wide listing arrives with `miniray start`.", file=sys.stderr)
        return 1
    print(state.format_table(state.list_objects(), state.memory_summary()))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: miniray COMMAND [ARGS...]\n\n" + USAGE)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb == "slurm":
        from miniray.launchers.slurm import main as run
    elif verb == "slides":
        from miniray.slides.build import main as run
    elif verb == "grade":
        from miniray.grading.cli import main as run
    elif verb == "microbenchmark":
        from miniray.bench.microbenchmark import main as run
    elif verb == "memory":
        run = _memory
    elif verb in ("start", "stop", "status"):
        print(f"miniray {verb}: multi-node clusters are not available in this version yet. "
              "Use miniray.init() for a local runtime.", file=sys.stderr)
        return 2
    else:
        print(f"miniray: unknown command {verb!r}.\n\n" + USAGE, file=sys.stderr)
        return 2
    return run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
