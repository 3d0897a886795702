"""Ray vs Dask for the lesson: peak memory and wall time of a broadcast and a set_index.

    python benchmarks/ray_vs_dask.py --python-for-peers /work/venv-peers/bin/python --figure ray-vs-dask.png
    python benchmarks/ray_vs_dask.py --quick --only dask_on_miniray,dask --no-write

The code lives in ``miniray.bench.ray_vs_dask``; this script only calls its ``main``.
"""
import os
import sys

try:
    from miniray.bench.ray_vs_dask import main
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from miniray.bench.ray_vs_dask import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
