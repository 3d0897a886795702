"""The ``miniray`` command: one verb per job, each handed to the module that does it.

    miniray slurm script|submit|up ...   Slurm launcher            (launchers/slurm.py)
    miniray slides [--execute] [NB...]   build lesson decks        (slides/build.py)
    miniray grade NOTEBOOK               grade an exercise         (grading/cli.py)
    miniray microbenchmark [--quick]     side-by-side benchmarks   (bench/microbenchmark.py)
    miniray memory                       the object store's objects, as a table
    miniray workflow list|status|output|resume|cancel|delete   durable workflows (workflow/cli.py)
    miniray start --head / stop / status a head that drivers join over TCP (cluster/head.py)
"""
from __future__ import annotations

import sys

USAGE = """\
commands:
  slides [--execute] [--check] [NB...]   build the lesson notebooks into slide decks; --check opens
                                         every slide at projector size and reports what does not fit
  grade NOTEBOOK                         grade your exercise notebook and say what to do next
  memory [--address ADDR]                list the objects in a running cluster's object store
  microbenchmark [--quick]               time miniray side by side with Ray and Dask (if installed)
  start --head | stop | status           run a head that other drivers and nodes join over TCP
  slurm script|submit|up ...             run miniray across the nodes of a Slurm job

Run `miniray COMMAND --help` for a command's options."""


_PLAIN_HELP = {
    "memory": "usage: miniray memory [--address ADDR]\n\nPrint the objects in the object store of "
              "the cluster at ADDR (default: the running head on this machine).",
    "stop": "usage: miniray stop\n\nStop every miniray head and node started with `miniray start` "
            "on this machine.",
}


def _memory(argv) -> int:
    import miniray
    from miniray.util import state
    address = argv[argv.index("--address") + 1] if "--address" in argv else "auto"
    try:
        miniray.init(address=address)
    except (ConnectionError, OSError) as err:
        print(f"miniray memory: {err}\nA local runtime lives inside its driver: call "
              "miniray.util.state.memory_summary() there (or use %memory in a notebook).", file=sys.stderr)
        return 1
    try:
        print(state.format_table(state.list_objects(), state.memory_summary()))
    finally:
        miniray.shutdown()
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: miniray COMMAND [ARGS...]\n\n" + USAGE)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb in _PLAIN_HELP and ("-h" in rest or "--help" in rest):   # never act on a help request
        print(_PLAIN_HELP[verb])
        return 0
    if verb == "slurm":
        from miniray.launchers.slurm import main as run
    elif verb == "slides":
        from miniray.slides.build import main as run
    elif verb == "grade":
        from miniray.grading.cli import main as run
    elif verb == "microbenchmark":
        from miniray.bench.microbenchmark import main as run
        if "--out" not in rest and not any(a.startswith("--out=") for a in rest):
            rest = [*rest, "--no-write"]   # the checkout's benchmarks/results/ only on request
    elif verb == "memory":
        run = _memory
    elif verb == "workflow":
        from miniray.workflow.cli import main as run
    elif verb in ("start", "stop", "status"):
        from miniray.cluster import head
        run = getattr(head, verb)
    else:
        print(f"miniray: unknown command {verb!r}.\n\n" + USAGE, file=sys.stderr)
        return 2
    return run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
