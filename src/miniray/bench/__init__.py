"""Side-by-side benchmarks of miniray against multiprocessing.Pool, Ray and dask.distributed.

Two entry points, each a ``main(argv) -> int``:

    miniray.bench.microbenchmark   init, tiny tasks, round trip, chain, put/get, actors, big arguments
    miniray.bench.memory           peak extra memory (PSS) while 4 tasks read one large array

How a run is laid out (parent = the process that prints the table)::

    parent ──spawn──> child: miniray   (sys.executable; runs a *_workloads.py file by path)
           ──spawn──> child: pool      (sys.executable)
           ──spawn──> child: ray       (--python-for-peers)
           ──spawn──> child: dask      (--python-for-peers)
    child ──"@@BENCH {json}" lines on stdout──> parent  (one line per workload started / finished)

The workload files import nothing from miniray at module level, so the peers' interpreter (which has
Ray and Dask but not miniray) can run them.  ``harness`` is the parent side: it enforces a timeout per
workload, kills and restarts a child that hangs, sweeps every process the child started, and writes
the JSON and Markdown results.  These are benchmarks, not tests: nothing here asserts a speed.
"""
