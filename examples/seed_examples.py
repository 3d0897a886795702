"""The seed deck's examples (shared/seed/ray-overview.md), unchanged except for the import line.

The seed's Counter has a typo (``muliplier``); this file runs the corrected class first, then the
seed's own version to show the error miniray gives for it.
"""
import miniray as ray

ray.init()  # this uses all available cores


@ray.remote()
def my_function(x):
    return x * x


futures = [my_function.remote(i) for i in range(4)]
print(ray.get(futures))  # [0, 1, 4, 9]


@ray.remote
class Counter(object):
    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier=1):
        self.n += 1 * multiplier

    def read(self):
        return self.n


# initialize
counters = [Counter.remote(i) for i in range(4)]
# call a mutating method
[c.increment.remote(2) for c in counters]
# call an accessor method
futures = [c.read.remote() for c in counters]
# get the value
print(ray.get(futures))  # [2, 3, 4, 5]


@ray.remote
class SeedCounter(object):
    """The seed's class exactly as written, typo included."""

    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier=1):
        self.n += 1 * muliplier  # noqa: F821 - the seed's typo, kept on purpose

    def read(self):
        return self.n


c = SeedCounter.remote(0)
try:
    ray.get(c.increment.remote(2))
except NameError as err:
    print("The seed's typo, as miniray reports it:\n" + str(err))
print("the actor is still alive:", ray.get(c.read.remote()))
ray.shutdown()
