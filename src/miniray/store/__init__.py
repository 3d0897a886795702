"""The node's object store: the shared-memory arena, serialization and the object table.

    arena.py          one /dev/shm file per node and its first-fit allocator (owner) / views (all)
    serialization.py  values to pickle-5 bytes with out-of-band buffers; inline or in the arena
    objects.py        ObjectStore: each object's state, refcounts, pins, spilling, the directory

A regular package (not a namespace directory), so the import contract (.importlinter) sees it.
"""
