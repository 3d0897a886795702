"""Side-by-side microbenchmark of miniray, multiprocessing.Pool, Ray and Dask (``miniray microbenchmark``).

    python benchmarks/microbenchmark.py --python-for-peers /work/venv-peers/bin/python
    python benchmarks/microbenchmark.py --quick --only miniray,pool

The code lives in ``miniray.bench.microbenchmark``; this script only calls its ``main``.
"""
import os
import sys

try:
    from miniray.bench.microbenchmark import main
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from miniray.bench.microbenchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
