"""Peak extra memory (PSS) while 4 tasks read one large array: miniray, Ray and Dask side by side.

    python benchmarks/memory_sharing.py --python-for-peers /work/venv-peers/bin/python
    python benchmarks/memory_sharing.py --quick --mib 32 --only miniray

The code lives in ``miniray.bench.memory``; this script only calls its ``main``.
"""
import os
import sys

try:
    from miniray.bench.memory import main
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from miniray.bench.memory import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
