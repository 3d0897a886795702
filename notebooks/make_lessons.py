"""Write the lesson notebooks ``notebooks/NN_topic.ipynb`` (stored without outputs).

    python notebooks/make_lessons.py            # regenerate all six lessons next to this file

Each lesson is a list of cells built with three helpers:

* ``slide(md)``   a markdown cell that starts a new slide (remark ``---``); ``???`` inside it starts
                  presenter notes that run to the end of the cell;
* ``code(src)``   a code cell on the current slide (``tags=["raises-exception"]`` for a cell that
                  fails on purpose, ``step=True`` to reveal it as an incremental step);
* ``hidden(src)`` a code cell the deck leaves out (slide type ``skip``): plumbing the class runs but
                  does not need to read.

Slides are projector-sized: about 15 lines of code plus output each.  ``miniray slides --execute``
turns the notebooks into decks under ``slides/``.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def slide(source: str, kind: str = "slide"):
    cell = new_markdown_cell(source.strip("\n"))
    cell.metadata["slideshow"] = {"slide_type": kind}
    return cell


def code(source: str, *, tags=(), step: bool = False):
    cell = new_code_cell(source.strip("\n"))
    cell.metadata["slideshow"] = {"slide_type": "fragment" if step else "-"}
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def hidden(source: str):
    cell = new_code_cell(source.strip("\n"))
    cell.metadata["slideshow"] = {"slide_type": "skip"}
    return cell


def title(number: int, name: str, tagline: str):
    return slide(f"""
class: center, middle

# Lesson {number}: {name}

{tagline}

.footnote[miniray: a small Ray-compatible runtime, `import miniray as ray`]
""")


def exercise(number: int, topic: str, tasks: str):
    return slide(f"""
# Your turn

Open **`notebooks/exercises/{number:02d}_{topic}.ipynb`**.

{tasks}

Check your work with

```bash
miniray grade notebooks/exercises/{number:02d}_{topic}.ipynb
```

.footnote[Each task prints a score and a hint. All green means exit code 0.]
""")


# =================================================================================================
# Lesson 1: tasks
# =================================================================================================
def lesson_01():
    return [
        title(1, "Tasks", "Remote functions: run Python functions in parallel"),
        slide("""
# Goals

By the end of this lesson you can

- start the runtime with `ray.init()`
- turn a function into a **task** with `@ray.remote`
- launch it with `.remote()` and collect results with `ray.get`
- measure a parallel speed-up yourself
- catch a task's error as your own exception type
- handle results as they finish, with `ray.wait`
"""),
        slide("""
# Start the runtime

`ray.init()` uses every core. Here we ask for exactly two, the size of the class machines.

???
On a laptop, `ray.init()` alone is fine. We pin 2 CPUs so timings match everyone's.
"""),
        code("""
import time
import miniray as ray

ray.init(num_cpus=2)          # ray.init() alone would use all cores
ray.cluster_resources()["CPU"]
"""),
        code("""
%load_ext miniray_magics
""", step=True),
        slide("""
# A remote function

Add a decorator. The body stays plain Python.
"""),
        code("""
@ray.remote()
def my_function(x):
    return x * x
"""),
        slide("""
# Calling it: `.remote()` then `get`

`.remote()` returns at once with a *future* (an `ObjectRef`). The work runs in a worker process.
"""),
        code("""
futures = [my_function.remote(i) for i in range(4)]
futures[0]
"""),
        code("""
print(ray.get(futures)) # [0, 1, 4, 9]
""", step=True),
        slide("""
# What did we just submit?

`%%taskgraph` runs a cell and draws the tasks it launched, and what feeds what.

???
Refs can be passed straight into other tasks: the runtime waits for them and passes the values.
"""),
        code("""
%%taskgraph
squares = [my_function.remote(i) for i in range(4)]
@ray.remote
def total(*xs):
    return sum(xs)
print(ray.get(total.remote(*squares)))
"""),
        slide("""
# Is it really faster? Serial first

Four calls that each take half a second.
"""),
        code("""
def slow_square(x):
    time.sleep(0.5)
    return x * x

start = time.perf_counter()
serial = [slow_square(i) for i in range(4)]
t_serial = time.perf_counter() - start
print(f"serial:   {t_serial:.2f} s  {serial}")
"""),
        slide("""
# ... then in parallel

Same function, wrapped by `ray.remote` (a decorator is just a function call).
"""),
        code("""
slow_square_remote = ray.remote(slow_square)

start = time.perf_counter()
parallel = ray.get([slow_square_remote.remote(i) for i in range(4)])
t_parallel = time.perf_counter() - start
print(f"parallel: {t_parallel:.2f} s  {parallel}")
print(f"speed-up: {t_serial / t_parallel:.1f}x on 2 CPUs")
"""),
        slide("""
# Where the time went

`%timeline` draws one row per worker: each bar is one task.

???
Two workers, four tasks: two rounds of 0.5 s. With 4 CPUs it would be one round.
"""),
        code("""
%timeline --last 3
"""),
        slide("""
# When a task fails

The error comes back at `get`, as **your** exception type, with the remote traceback.
"""),
        code("""
@ray.remote
def divide(a, b):
    return a / b

ref = divide.remote(1, 0)          # no error yet: it is only submitted
try:
    ray.get(ref)
except ZeroDivisionError as err:    # a plain except clause works
    print("caught:", type(err).__name__)
"""),
        slide("""
# The full story

Uncaught, the traceback names the worker and the line in *your* code.
"""),
        code("""
ray.get(ref)
""", tags=["raises-exception"]),
        slide("""
# `ray.wait`: take results as they finish

`get` on a list waits for the slowest. `wait` hands back what is ready.
"""),
        code("""
@ray.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds

pending = [nap.remote(s) for s in (0.9, 0.1, 0.4)]
while pending:
    ready, pending = ray.wait(pending, num_returns=1)
    print("finished:", ray.get(ready[0]), "s")
"""),
        slide("""
# A pattern to avoid: `get` inside the loop

.pull-left[
**Slow**: waits after each submit
```python
out = []
for i in range(4):
    ref = slow.remote(i)
    out.append(ray.get(ref))
```
]
.pull-right[
**Fast**: submit all, then get once
```python
refs = [slow.remote(i)
        for i in range(4)]
out = ray.get(refs)
```
]

.footnote[The left one is serial code with extra steps. You will fix one in the exercise.]
"""),
        slide("""
# Recap

- `ray.init()` starts workers (one per CPU)
- `@ray.remote` turns a function into a task
- `f.remote(x)` returns an `ObjectRef` right away
- `ray.get(refs)` blocks and returns the values
- errors arrive as your exception type, with the remote traceback
- `ray.wait` gives results in finishing order
- submit everything first, `get` once
"""),
        exercise(1, "tasks", "- parallelise a loop with tasks\n- fix a `get` inside a loop\n"
                             "- use `ray.wait` to handle results as they come"),
        slide("""
# Clean up

Stop the workers when you are done.
"""),
        code("""
ray.shutdown()
"""),
    ]


# =================================================================================================
# Lesson 2: actors
# =================================================================================================
def lesson_02():
    return [
        title(2, "Actors", "Remote classes: state that lives in a worker"),
        slide("""
# Goals

- turn a class into an **actor** with `@ray.remote`
- create instances with `.remote()` and call their methods
- debug an actor method that fails
- know what order calls run in
- find an actor by name; share work over an `ActorPool`
"""),
        code("""
import os, time
import miniray as ray

ray.init(num_cpus=2)
%load_ext miniray_magics
"""),
        slide("""
# The Counter from the course notes

Typed in exactly as the notes have it.

???
Don't point out the typo yet. Let the class find it.
"""),
        code("""
@ray.remote
class Counter(object):
    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier = 1):
        self.n += 1 * muliplier

    def read(self):
        return self.n
"""),
        slide("""
# Using it

Four counters, start values 0 to 3, each incremented by 2. The notes promise `[2, 3, 4, 5]`.
"""),
        code("""
# initialize
counters = [Counter.remote(i) for i in range(4)]
# call a mutating method
[c.increment.remote(2) for c in counters]
# call an accessor method
futures = [c.read.remote() for c in counters]
# get the value
print(ray.get(futures)) # [2, 3, 4, 5]
"""),
        slide("""
class: center, middle

# `[0, 1, 2, 3]`?

No error, wrong answer. Where did the increments go?

???
Ask the room before the next slide.
"""),
        slide("""
# Debugging: `get` the refs you dropped

`increment.remote(2)` returned refs, and we threw them away. Errors wait in those refs.
"""),
        code("""
increments = [c.increment.remote(2) for c in counters]
ray.get(increments)
""", tags=["raises-exception"]),
        slide("""
# The fix

A typo: `muliplier`. Python even suggests the right name. (And `1 * multiplier` is just `multiplier`.)
"""),
        code("""
@ray.remote
class Counter(object):
    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier=1):
        self.n += multiplier

    def read(self):
        return self.n
"""),
        code("""
counters = [Counter.remote(i) for i in range(4)]
ray.get([c.increment.remote(2) for c in counters])   # now we look at the result
print(ray.get([c.read.remote() for c in counters]))  # [2, 3, 4, 5]
""", step=True),
        slide("""
# Lesson: don't drop refs

.blue[NOTE]: a method that "returns nothing" still returns a ref. `get` it (or `wait` on it)
when you need to know it worked.

An error in a method does **not** kill the actor: its state is still there.
"""),
        code("""
broken = Counter.remote(10)
bad = broken.increment.remote("two")        # str + int: TypeError inside the actor
ready, _ = ray.wait([bad])
print("still alive, n =", ray.get(broken.read.remote()))
"""),
        slide("""
# State lives in one process

Each actor is its own worker process, and keeps its attributes between calls.
"""),
        code("""
@ray.remote
class Where:
    def pid(self):
        return os.getpid()

a, b = Where.remote(), Where.remote()
print("driver:", os.getpid())
print("actor a:", ray.get([a.pid.remote(), a.pid.remote()]))
print("actor b:", ray.get(b.pid.remote()))
"""),
        slide("""
# Ordering

Calls from one caller to one actor run **one at a time, in the order sent**.
"""),
        code("""
@ray.remote
class Log:
    def __init__(self):
        self.lines = []
    def add(self, x):
        self.lines.append(x)
    def read(self):
        return self.lines

log = Log.remote()
for word in ["first", "second", "third"]:
    log.add.remote(word)                     # not waited for...
print(ray.get(log.read.remote()))             # ...yet all three are in, in order
"""),
        slide("""
# Two actors work in parallel

`%timeline` shows a row per actor: calls on one actor queue up, actors run side by side.
"""),
        code("""
@ray.remote
class Sleeper:
    def nap(self, s):
        time.sleep(s)
        return s

s1, s2 = Sleeper.remote(), Sleeper.remote()
ray.get([s.nap.remote(0.3) for s in (s1, s2) for _ in range(2)])
%timeline --last 2
"""),
        slide("""
# Named actors

Give an actor a name; any task or actor can look it up with `ray.get_actor`.
"""),
        code("""
board = Counter.options(name="scoreboard").remote(0)

@ray.remote
def player(points):
    ray.get_actor("scoreboard").increment.remote(points)
    return points

ray.get([player.remote(p) for p in (1, 2, 3)])
print(ray.get(ray.get_actor("scoreboard").read.remote()))   # 6
"""),
        slide("""
# `ActorPool`: a team of workers

A fixed set of actors; the pool hands each idle actor the next item.
"""),
        code("""
from miniray.util import ActorPool

@ray.remote
class Squarer:
    def square(self, x):
        return x * x

pool = ActorPool([Squarer.remote(), Squarer.remote()])
print(list(pool.map(lambda actor, v: actor.square.remote(v), range(8))))
"""),
        slide("""
# Recap

- `@ray.remote` on a class makes an actor; `Cls.remote(...)` starts one
- `handle.method.remote(...)` returns a ref, like a task
- a dropped ref hides errors: `get` what matters
- one actor = one process = its own state
- calls from one caller run in order; different actors run in parallel
- `.options(name=...)` + `ray.get_actor`; `ActorPool` for a team
"""),
        exercise(2, "actors", "- write an actor that keeps a running total\n- use a named actor\n"
                              "- spread work over an `ActorPool`"),
        code("""
ray.shutdown()
"""),
    ]


# =================================================================================================
# Lesson 3: the object store
# =================================================================================================
def lesson_03():
    return [
        title(3, "The object store", "Shared memory: one copy, many readers"),
        slide("""
# Goals

- `ray.put` data once and `ray.get` it anywhere
- see **zero-copy** reads: two gets, one buffer, read-only
- pass refs instead of big arrays
- watch reference counting free memory
- see what happens when the store is full (spilling)
- build an array directly in the store
"""),
        code("""
import time
import numpy as np
import miniray as ray
from miniray.util.state import list_objects, memory_summary

ray.init(num_cpus=2)
%load_ext miniray_magics
"""),
        slide("""
# `put` and `get`

`put` stores a value and returns a ref. Any task, actor or the driver can `get` it.
"""),
        code("""
ref = ray.put({"course": "miniray", "lesson": 3})
print(ref)
print(ray.get(ref))
"""),
        slide("""
# Zero-copy reads

A numpy array in the store is not copied on `get`: each reader gets a view of shared memory.
"""),
        code("""
big = np.arange(10_000_000, dtype=np.float64)       # 80 MB
big_ref = ray.put(big)
a = ray.get(big_ref)
b = ray.get(big_ref)
print("same buffer: ", np.shares_memory(a, b))
print("a copy of big:", not np.shares_memory(a, big))
print("writeable:   ", a.flags.writeable)
"""),
        slide("""
# Read-only, on purpose

Many processes may be reading this buffer. Writing to it would change everyone's data.
"""),
        code("""
a[0] = 42.0
""", tags=["raises-exception"]),
        code("""
mine = a.copy()       # want to change it? make your own copy
mine[0] = 42.0
print(mine[:3], a[:3])
""", step=True),
        slide("""
# Pass refs, not arrays

Passing `big` to ten tasks stores it ten times. Passing `big_ref` stores it zero more times.
"""),
        code("""
@ray.remote
def mean(x):
    return float(x.mean())

start = time.perf_counter()
ray.get([mean.remote(big) for _ in range(10)])          # ten puts
t_value = time.perf_counter() - start

start = time.perf_counter()
ray.get([mean.remote(big_ref) for _ in range(10)])      # the one copy we already have
t_ref = time.perf_counter() - start
print(f"by value: {t_value:.2f} s   by ref: {t_ref:.2f} s")
"""),
        slide("""
# What is in the store?

`%memory` draws the largest objects. `list_objects()` gives the same as data.
"""),
        code("""
%memory --top 5
"""),
        slide("""
# Reference counting

An object lives as long as a ref to it exists somewhere. Drop the last ref: it is freed.
"""),
        code("""
def store_mib():
    return sum(o["object_size"] for o in list_objects()) / 2**20

print(f"before: {len(list_objects())} objects, {store_mib():.0f} MiB")
del big_ref, a, b
time.sleep(0.2)
print(f"after:  {len(list_objects())} objects, {store_mib():.0f} MiB")
"""),
        slide("""
# When the store is full: spilling

Start again with a 64 MiB store and put 100 MiB into it. Older objects move to disk.
"""),
        code("""
ray.shutdown()
ray.init(num_cpus=2, object_store_memory=64 * 2**20)

refs = [ray.put(np.full(20 * 2**20 // 8, i, dtype=np.float64)) for i in range(5)]  # 5 x 20 MiB
for o in list_objects():
    print(f"{o['object_size'] / 2**20:5.1f} MiB  {o['location']}")
"""),
        code("""
print("spilled:", memory_summary()["spilled"] // 2**20, "MiB")
print("first values:", [ray.get(r)[0] for r in refs])     # spilled objects come back on get
del refs
""", step=True),
        slide("""
# Build an array in the store

`put` copies your array in. `miniray.util.empty` allocates **in** the store, so the data exists once.
"""),
        code("""
import miniray.util

grid = miniray.util.empty((1000, 1000), "float64")   # writable, in shared memory
grid[:] = np.arange(1000)                            # fill it in place
grid_ref = ray.put(grid)                             # seal it: no copy
print("read-only now:", not grid.flags.writeable)

@ray.remote
def row_sum(g, i):
    return float(g[i].sum())

print(ray.get([row_sum.remote(grid_ref, i) for i in range(3)]))
"""),
        slide("""
# Recap

- `put` once, pass the **ref** around
- `get` of a numpy array is zero-copy and read-only; `.copy()` to modify
- objects are freed when the last ref is gone
- a full store spills to disk; `get` brings objects back
- `miniray.util.empty` builds an array directly in the store
"""),
        exercise(3, "object_store", "- avoid a memory copy by passing a ref\n"
                                    "- find what keeps an object alive\n- build an array in the store"),
        code("""
del grid, grid_ref
ray.shutdown()
"""),
    ]


# =================================================================================================
# Lesson 4: Ray vs Dask
# =================================================================================================
BENCH_HELPERS = r'''
# Plumbing for the benchmark slides: find the repository, run the script, read its JSON.
import glob, json, shutil, subprocess, sys, tempfile
from pathlib import Path

def repo_root():
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "benchmarks").is_dir() and (d / "pyproject.toml").exists():
            return d
    return Path.cwd().parent

def ratios(report):
    # {system: peak extra memory / array size, how it was shared} from the script's JSON report
    out = {}
    for name, system in report.get("systems", {}).items():
        sharing = system.get("sharing") or system.get("results", {}).get("sharing") or {}
        if isinstance(sharing.get("ratio"), (int, float)):
            out[name] = (float(sharing["ratio"]), sharing.get("how", ""))
    return out

def run_benchmark(mib=64, timeout=60):
    # (results, message); results is {} when the script is missing, fails or is too slow
    script = repo_root() / "benchmarks" / "memory_sharing.py"
    if not script.exists():
        return {}, f"benchmark script not found: {script}"
    out_dir = tempfile.mkdtemp(prefix="memory_sharing_")
    try:
        proc = subprocess.run([sys.executable, str(script), "--quick", "--mib", str(mib),
                               "--only", "miniray,dask", "--out", out_dir],
                              capture_output=True, text=True, timeout=timeout, cwd=repo_root())
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {}, f"benchmark exited with {proc.returncode}: " + " | ".join(tail)
        for path in sorted(glob.glob(f"{out_dir}/*.json")):
            found = ratios(json.load(open(path)))
            if found:
                return found, f"measured just now, {mib} MiB array, 4 tasks reading it"
        return {}, "benchmark ran but wrote no JSON with a sharing ratio per system"
    except subprocess.TimeoutExpired:
        return {}, f"benchmark did not finish within {timeout} s"
    except Exception as err:                      # the lesson goes on whatever happened
        return {}, f"benchmark could not run: {type(err).__name__}: {err}"
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
'''


def lesson_04():
    return [
        title(4, "Ray vs Dask", "Does a shared-memory store really save memory? Let's measure."),
        slide("""
# Goals

- read the claim from the course notes
- re-measure it live on this machine
- draw the result as a bar chart
- know what Dask is, and where Dask on miniray is heading
"""),
        slide("""
# The claim

> Compared to Dask, Ray has the advantage of a **shared-memory object store**, which allows workers
> on the same node to reuse memory.

The notes showed a chart from a blog post.
Today we make our own chart, with miniray instead of Ray.

.footnote[Source of the claim: https://www.anyscale.com/blog/analyzing-memory-management-and-performance-in-dask-on-ray]
"""),
        slide("""
# Why it could be true

.pull-left[
**Dask, process workers**

the array is pickled and sent to a worker; a task on another worker gets a copy of its own

more workers &rarr; more copies
]
.pull-right[
**miniray**

`put` copies the array once into shared memory

every worker maps those same pages: no copy per worker
]

We measure **peak extra memory / array size**, the driver's own array included (that alone is 1.0).
"""),
        slide("""
# The experiment

`benchmarks/memory_sharing.py` puts a 64 MiB array in each system, has workers read it,
and records the peak memory above the baseline.

???
The script lives in the repo; you can run it yourself with bigger arrays: `--mib 512`.
"""),
        hidden(BENCH_HELPERS),
        code("""
results, message = run_benchmark(mib=64)
print(message)
for name, (x, how) in results.items():
    print(f"{name:>8}: {x:.2f} x the array size   ({how})")
"""),
        slide("""
# The picture

Same chart as in the notes, measured on the machine in front of you.
"""),
        code("""
import matplotlib.pyplot as plt

if results:
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(results)
    ax.bar(names, [results[n][0] for n in names], color=["#1f77b4", "#ff7f0e", "#2ca02c"][:len(names)])
    ax.set_ylabel("peak extra memory\\n(x array size)")
    ax.set_title("64 MiB array read by every worker")
    plt.show()
else:
    print("No measurement to draw:", message)
    print("Run `python benchmarks/memory_sharing.py --quick --mib 64 --only miniray,dask` to see why.")
"""),
        slide("""
# Reading the bars

- both bars include the driver's own array: **1x**
- miniray adds the copy in the store, shared by all workers: about **1x** more
- Dask adds a copy in each worker process that reads it
- lesson 3's `miniray.util.empty` builds the array *in* the store: no driver copy at all
  (the script's `--only miniray_store` measures that)
"""),
        code("""
if "miniray" in results and "dask" in results:
    ratio = results["dask"][0] / results["miniray"][0]
    print(f"Dask used {ratio:.1f}x the memory miniray used, on this machine, just now.")
"""),
        slide("""
# See it from the inside

One 64 MiB array, read by two tasks in two processes: the store still holds one copy.
"""),
        code("""
import numpy as np
import miniray as ray
from miniray.util.state import memory_summary

ray.init(num_cpus=2)
arr_ref = ray.put(np.ones(64 * 2**20 // 8))

@ray.remote
def peek(a):
    import os
    return os.getpid(), float(a.sum())

print(ray.get([peek.remote(arr_ref) for _ in range(2)]))
print(f"store holds {memory_summary()['used'] / 2**20:.0f} MiB")
"""),
        slide("""
# Dask in one slide

Dask builds a **graph** of small pieces (chunks) and a scheduler runs it.
"""),
        code("""
import dask.array as da

x = da.ones((4000, 4000), chunks=(1000, 1000))   # 16 chunks, nothing computed yet
y = (x + x.T).mean()
print(y)
print(y.compute(scheduler="threads"))
"""),
        slide("""
# Next: Dask collections on miniray

Ray ships a Dask scheduler (`dask_on_ray`): Dask makes the graph, Ray runs the chunks as tasks
and keeps them in the shared store.

miniray's version, `miniray.util.dask`, is **next** on the roadmap:

```python
from miniray.util.dask import miniray_dask_get     # coming soon
y.compute(scheduler=miniray_dask_get)
```
"""),
        code("""
try:
    import miniray.util.dask as mdask
    print("miniray.util.dask is here:", [n for n in dir(mdask) if not n.startswith("_")])
except ImportError:
    print("miniray.util.dask is not in this version yet: it is next.")
"""),
        slide("""
# Recap

- the claim: a shared-memory store means fewer copies than Dask's per-worker copies
- we measured **peak extra memory / array size**, live
- inside miniray: one copy in the store, many readers
- Dask builds chunked graphs; running them on miniray is next
"""),
        exercise(4, "dask", "- measure memory for a copy vs a shared ref\n"
                            "- express a chunked computation as tasks"),
        code("""
ray.shutdown()
"""),
    ]


# =================================================================================================
# Lesson 5: multi-node and Slurm
# =================================================================================================
def lesson_05():
    return [
        title(5, "Many nodes, with Slurm", "From one laptop to a cluster job"),
        slide("""
# Goals

- picture a cluster: one head, many nodes
- generate a Slurm batch script with `miniray slurm script`
- know how to submit a job, watch it and read its output
- run a three-node cluster on one machine and watch a node die
"""),
        slide("""
# The idea

It is also possible to run across nodes using **Slurm**, the batch system of most HPC centres.

```
 node 1 (head)               node 2
 +----------------+          +----------------+
 | scheduler      | <------> | workers x 4    |
 | store, workers |   TCP    | store          |
 | your script    |          +----------------+
 +----------------+
```

Your script connects to the head and uses every node's CPUs.
"""),
        slide("""
# A cluster on your laptop

`Cluster` starts a head and two nodes as separate processes, each with its own IP on loopback
(127.0.0.1, .2, .3), joined over TCP with a secret token: what `miniray start` does on real machines.
"""),
        code("""
import shutil, subprocess, sys, time
from pathlib import Path
import miniray as ray
from miniray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.add_node(num_cpus=1, resources={"big_box": 1})
cluster.connect()                       # = ray.init(address=cluster.address)
for n in ray.nodes():
    print(n["NodeManagerAddress"], "alive" if n["Alive"] else "dead", n["Resources"]["CPU"], "CPU")
"""),
        slide("""
# The same program, on three nodes

`scheduling_strategy="SPREAD"` puts tasks on every node; a custom resource picks one.
"""),
        code("""
@ray.remote
def where(i):
    time.sleep(0.2)
    return ray.get_runtime_context().get_node_id()[:8]

print(sorted(set(ray.get([where.options(scheduling_strategy="SPREAD").remote(i) for i in range(6)]))))
print("big_box is on", ray.get(where.options(resources={"big_box": 1}).remote(0)))
"""),
        slide("""
# When a node dies

Kill a node the hard way (SIGKILL, like a crashed machine): it is marked dead, and its running
tasks are retried on the nodes that are left. Each node keeps its own object store, so a result
that lived only there is gone too; miniray makes it again by re-running the task that made it
(its *lineage*), as Ray does.
"""),
        code("""
@ray.remote(resources={"maker": 1})
def make():
    return list(range(100_000)), ray.get_runtime_context().get_node_id()[:8]

doomed = cluster.add_node(num_cpus=1, resources={"maker": 1})
cluster.wait_for_nodes()
ref = make.remote()
ray.wait([ref])                         # made, and stored on the doomed node only
cluster.add_node(num_cpus=1, resources={"maker": 1})
cluster.wait_for_nodes()
cluster.remove_node(doomed)             # SIGKILL
print([("alive" if n["Alive"] else "DEAD") for n in ray.nodes()])
values, made_on = ray.get(ref)          # rebuilt on the new node
print(len(values), "values, made again on", made_on)
print(len(ray.get([where.remote(i) for i in range(4)])), "tasks still run")
cluster.shutdown()
"""),
        slide("""
# The batch script

`miniray slurm script` prints an `sbatch` script. Here are the lines Slurm reads:
"""),
        code("""
miniray = shutil.which("miniray") or str(Path(sys.executable).with_name("miniray"))
cmd = [miniray, "slurm", "script", "--nodes", "2", "--cpus-per-task", "4", "--", "python", "job.py"]
script = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
print("\\n".join(line for line in script.splitlines() if line.startswith("#SBATCH")))
print(f"... {len(script.splitlines())} lines in all")
"""),
        slide("""
# What the script does

Its header comment explains each step:
"""),
        code("""
import re
for line in script.splitlines():
    if re.match(r"#   [1-6]\\. ", line):
        print(line[4:100])
"""),
        slide("""
# Your job script

An ordinary miniray program. Inside the job, `ray.init()` joins the job's cluster.
"""),
        code("""
job = '''
import miniray as ray
ray.init()

@ray.remote
def square(x):
    return x * x

print(sum(ray.get([square.remote(i) for i in range(100)])))
ray.shutdown()
'''
open("job.py", "w").write(job)
print(subprocess.run([sys.executable, "job.py"], capture_output=True, text=True).stdout)   # locally first
"""),
        slide("""
# Submit, watch, read

```bash
miniray slurm submit --nodes 2 --cpus-per-task 4 -- python job.py   # calls sbatch
squeue -u $USER                  # PD = waiting, R = running
sacct -j JOBID                   # state and exit code, after the fact
cat miniray-JOBID.out            # everything your script printed
scancel JOBID                    # changed your mind
```

Add `--wait` to `submit` to block until the job ends and get its exit code.

???
Inside an interactive allocation (`salloc`), `miniray slurm up` starts the cluster in place.
"""),
        slide("""
# Asking for the right resources

- `--nodes N`: how many machines
- `--cpus-per-task C`: CPUs per node = miniray workers per node
- `--gpus-per-node G`, `--mem 8G`, `--time 1:00:00`, `--partition P`

Ask for what your tasks need: idle CPUs in a job are still billed.
"""),
        slide("""
# Develop small, run big

.blue[NOTE]: develop with `ray.init()` on your laptop, try it on a `Cluster` of local nodes, then
submit the same script with `miniray slurm submit`. Only where it runs changes.
"""),
        code("""
import os
os.remove("job.py")
"""),
        slide("""
# Recap

- a cluster = a head node + worker nodes; your script talks to the head
- `miniray slurm script` writes the sbatch file; `submit` sends it
- `squeue`, `sacct`, the `.out` file: watch and read
- `Cluster` (or `miniray start --head` / `--address`) gives you a real cluster to practise on
"""),
        slide("""
# Your turn

No graded exercise for this lesson. Try it:

1. `miniray slurm script --nodes 2 --cpus-per-task 4 -- python job.py > job.sbatch`
2. read `job.sbatch` top to bottom: find where the head's port is chosen
3. on a cluster: `sbatch job.sbatch`, then `squeue -u $USER`

.footnote[Graded practice for tasks: `notebooks/exercises/01_tasks.ipynb`.]
"""),
    ]


# =================================================================================================
# Lesson 6: the ecosystem
# =================================================================================================
def lesson_06():
    return [
        title(6, "The Ray ecosystem", "Datasets, Tune, RLlib, Workflows: built from tasks and actors"),
        slide("""
# Goals

- know what each library in the course notes is for
- see that each is tasks and actors underneath
- build a toy version of each in a few lines
"""),
        slide("""
# Other Ray projects

- **Datasets**: read data in many formats; distributed map, filter, repartition
- **Tune**: distributed hyperparameter search
- **RLlib**: reinforcement learning at scale, for TensorFlow and PyTorch
- **Workflows**: durable task graphs that survive restarts

.footnote[All of them are Ray libraries; here we build toy versions on miniray.]
"""),
        code("""
import json, os, random, tempfile, time
import miniray as ray

ray.init(num_cpus=2);
"""),
        slide("""
# Datasets: data in partitions

A dataset is a list of **partitions**; `map` and `filter` run one task per partition.
"""),
        code("""
class ToyDataset:
    def __init__(self, refs):
        self.refs = refs                       # one ObjectRef per partition
    @staticmethod
    def from_items(items, parts=4):
        return ToyDataset([ray.put(items[i::parts]) for i in range(parts)])
    def map(self, fn):
        task = ray.remote(lambda part: [fn(x) for x in part])
        return ToyDataset([task.remote(r) for r in self.refs])
    def filter(self, pred):
        task = ray.remote(lambda part: [x for x in part if pred(x)])
        return ToyDataset([task.remote(r) for r in self.refs])
    def take(self):
        return sorted(x for part in ray.get(self.refs) for x in part)
"""),
        slide("""
# Datasets: using it

Each step returns a new dataset of refs at once; `take` is the only `get`.
"""),
        code("""
ds = ToyDataset.from_items(list(range(20)))
print(len(ds.refs), "partitions")
print(ds.map(lambda x: x * x).filter(lambda x: x % 2 == 0).take())
"""),
        slide("""
# Tune: search for good settings

Try every combination of settings, one task per trial, keep the best.
"""),
        code("""
@ray.remote
def trial(lr, momentum):
    # a toy "training run": the score peaks at lr=0.1, momentum=0.9
    time.sleep(0.1)
    return -(lr - 0.1) ** 2 * 100 - (momentum - 0.9) ** 2

grid = [(lr, m) for lr in (0.01, 0.1, 0.3) for m in (0.5, 0.9, 0.99)]
scores = ray.get([trial.remote(lr, m) for lr, m in grid])
best = max(zip(scores, grid))
print(f"{len(grid)} trials; best lr={best[1][0]}, momentum={best[1][1]}")
"""),
        slide("""
# RLlib: an agent that learns

The agent is an **actor**: it keeps its estimates between steps. Here, a 3-armed bandit.
"""),
        code("""
@ray.remote
class BanditAgent:
    def __init__(self, arms, epsilon=0.1):
        self.counts, self.values, self.eps = [0] * arms, [0.0] * arms, epsilon
        self.rng = random.Random(0)
    def act(self):
        if self.rng.random() < self.eps:
            return self.rng.randrange(len(self.values))
        return max(range(len(self.values)), key=self.values.__getitem__)
    def learn(self, arm, reward):
        self.counts[arm] += 1
        self.values[arm] += (reward - self.values[arm]) / self.counts[arm]
    def estimates(self):
        return [round(v, 2) for v in self.values]
"""),
        slide("""
# RLlib: the training loop

Act, see a reward, learn. The agent's estimates move toward the truth.
"""),
        code("""
pay = [0.2, 0.5, 0.8]                       # the true win rate of each arm (hidden from the agent)
env = random.Random(1)
agent = BanditAgent.remote(3)
for _ in range(300):
    arm = ray.get(agent.act.remote())
    agent.learn.remote(arm, 1.0 if env.random() < pay[arm] else 0.0)
print("estimates:", ray.get(agent.estimates.remote()), " truth:", pay)
"""),
        slide("""
# Workflows: steps that survive a restart

Each step saves its result to a file. Run again: finished steps are read back, not recomputed.
"""),
        code("""
store = tempfile.mkdtemp(prefix="workflow_")

def durable(fn):
    task = ray.remote(fn)
    def step(*args):
        path = os.path.join(store, f"{fn.__name__}{args}.json")
        if os.path.exists(path):
            print(f"  {fn.__name__}{args}: from {os.path.basename(path)}")
            return json.load(open(path))
        result = ray.get(task.remote(*args))
        json.dump(result, open(path, "w"))
        print(f"  {fn.__name__}{args}: computed")
        return result
    return step
"""),
        slide("""
# Workflows: run it twice

The second run finds every step's file and skips the work.
"""),
        code("""
@durable
def slow_add(a, b):
    time.sleep(0.5)
    return a + b

for run in (1, 2):
    start = time.perf_counter()
    print(f"run {run}:")
    total = slow_add(slow_add(1, 2), slow_add(3, 4))
    print(f"  total={total} in {time.perf_counter() - start:.1f} s")
"""),
        slide("""
# Recap

| library | idea | built here from |
|---|---|---|
| Datasets | partitions + map/filter | one task per partition |
| Tune | many trials, keep the best | one task per trial |
| RLlib | an agent with state | an actor |
| Workflows | durable steps | tasks + results on disk |

Everything in this course is tasks, actors and the object store.
"""),
        slide("""
# Your turn

No graded exercise for this lesson. Try one:

- add `repartition(n)` to `ToyDataset`
- give `trial` a `random` search instead of a grid
- make the bandit use two agents and compare epsilons

.footnote[Graded practice for actors: `notebooks/exercises/02_actors.ipynb`.]
"""),
        code("""
import shutil
shutil.rmtree(store)
ray.shutdown()
"""),
    ]


LESSONS = {
    "01_tasks": lesson_01,
    "02_actors": lesson_02,
    "03_object_store": lesson_03,
    "04_ray_vs_dask": lesson_04,
    "05_multinode_slurm": lesson_05,
    "06_ecosystem": lesson_06,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=LESSONS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"
    nbformat.validate(nb)
    return nb


def main() -> None:
    for name in LESSONS:
        path = HERE / f"{name}.ipynb"
        nbformat.write(build(name), path)
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
