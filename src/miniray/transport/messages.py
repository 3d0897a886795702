"""Message items, named by the side of the boundary they live on (STYLE 4).

Every frame is a list of items; each item is a tuple whose first element names it.

client → node (a client is the driver, a worker, or a driver joined over TCP)
    ("fn", fn_id, blob)                 a pickled function or class, sent once per client
    ("submit", TaskSpec, ts)            a task or an actor method call (creations are a "req")
    ("refs", [(oid, delta), ...])       ObjectRef counts in that process went 0→1 (+1) or 1→0 (-1)
    ("unpin", [oid, ...])               zero-copy views of these objects died in that process
    ("put", oid, desc, contained, call_site)   a value the client stored itself; desc ("rshm", ...)
                                        means in the arena of the client's own (joined) node
    ("copy", oid, desc)                 the client pulled a copy of oid into its node's arena
    ("write", offset, bytes)            a piece of an object streamed into a block of the head's arena
    ("pin", oid)                        the client holds a zero-copy view of oid (an array it built)
    ("free_block", offset)              give back a block from an "alloc" that never became an object
    ("req", rid, kind, args)            a request that gets exactly one ("reply", rid, ok, value);
                                        kind names a Node._req_<kind> method (get, wait, alloc, ...)
worker → node only
    ("hello", worker_id, pid, node_id)  first item on a worker's connection (its own node's id)
    ("started", task_id, ts)            the task began to run
    ("done", task_id, Result[, True])   the task ended (value, error, or cancelled); True: no
                                        "started" was sent, it began at Result.start
    ("requeue", [task_id, ...])         prefetched calls handed back before the worker blocks in get
node agent → head
    ("hello_node", node_id, ip, total, data_addr)   first item of a joined node's connection
    ("heartbeat", store_used, store_capacity)       every second
driver joined over TCP ↔ head
    ("hello_driver", pid)  ──►  ◄── ("welcome", holder, node_id, arena_path, capacity, inline_max,
                                     session_dir, node_ip)
head → node agent
    ("welcome_node", head_node_id)      the answer to "hello_node"
    ("spawn",)                          start one more worker there
    ("free", [offset, ...])             objects stored on that node were freed
    ("bye",)                            the head is stopping on purpose
node → worker ("call items")
    ("exec", TaskSpec, fn_blob|None, {oid: desc}, gpu_ids)   desc ("fetch", data_addr, ...): the
                                        object lives on another node; pull it (cluster/transfer.py)
    ("cancel", task_id)
    ("stop",)                           a clean shutdown: exit now (the node removes the arena)
node → any client
    ("reply", rid, ok, value)
node → worker of an actor
    ("terminate",)                      end the actor gracefully: its shutdown hooks run, then it exits
node → its own inbox
    ("handles_gone", actor_id)          the store saw the actor's last handle go (any thread)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TaskSpec:
    task_id: str
    name: str                      # "square", "Counter.__init__", "Counter.increment"
    type: str                      # "task" | "actor_creation" | "actor_method"
    fn_id: str                     # function id, class id, or the method's name
    args: tuple | bytes            # descriptor of the pickled (args, kwargs); bare bytes for scalars
    deps: tuple                    # top-level ObjectRef arguments, resolved before the call
    nested: tuple                  # refs nested inside the arguments, kept alive while pending
    returns: tuple                 # object ids this call will produce
    num_returns: object = 1        # int, or "dynamic"/"streaming" for generators
    resources: dict = field(default_factory=dict)
    max_retries: int = 3
    retry_exceptions: object = False   # bool, or a tuple of exception types, cloudpickled
    actor_id: str | None = None
    options: dict = field(default_factory=dict)
    call_site: str = ""
    owner: str = ""
    attempt: int = 0

    def __reduce__(self):       # a flat tuple: pickles and loads about twice as fast as slots state
        return (TaskSpec, (self.task_id, self.name, self.type, self.fn_id, self.args, self.deps, self.nested,
                           self.returns, self.num_returns, self.resources, self.max_retries,
                           self.retry_exceptions, self.actor_id, self.options, self.call_site, self.owner,
                           self.attempt))


@dataclass(slots=True)
class Result:
    """What a worker reports when a call ends."""
    values: list                   # [(oid, desc, contained_oids)]
    start: float
    end: float
    error: str | None = None       # exception class name when the call failed
    retryable: bool = False        # the failure matches retry_exceptions
    cancelled: bool = False

    def __reduce__(self):
        return (Result, (self.values, self.start, self.end, self.error, self.retryable, self.cancelled))
