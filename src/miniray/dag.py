"""Lazy computation graphs: ``.bind()`` builds a DAG of nodes, ``.execute()`` runs it as tasks.

    f.bind(x)          ──► FunctionNode(f, args, kwargs, options)
    Actor.bind(a)      ──► ClassNode(Actor, ...)      .method.bind(...) ──► ClassMethodNode
    handle.m.bind(..)  ──► ClassMethodNode on a live actor
    InputNode()        ──► the value(s) given to execute(); inp[0], inp["k"], inp.k ──► InputAttributeNode
    MultiOutputNode([a, b])  ──► execute() returns a list of refs

State: a node is plain data (the callable, its arguments with child nodes among them, its options) and
never changes after it is built, so a DAG pickles and runs any number of times.  ``execute`` walks the
graph depth-first once, in the caller's thread, with a memo (``id(node)`` -> result) so a node used
twice runs once per execute; a FunctionNode becomes one ``.remote()`` call whose child results are
ObjectRefs (top level, or inside lists, tuples and dicts), so tasks start as soon as their inputs are
ready, as with hand-written ``.remote()`` chains.  Libraries (``miniray.workflow``) walk the same
nodes with :func:`walk` and their own executor.
"""
from __future__ import annotations

import threading
import uuid

__all__ = ["DAGNode", "FunctionNode", "ClassNode", "ClassMethodNode", "InputNode", "InputAttributeNode",
           "MultiOutputNode", "DAGInputData", "walk"]


def _map_nodes(value, fn):
    """``value`` with every DAGNode inside it (top level, or in lists, tuples, dicts) replaced by fn(node)."""
    if isinstance(value, DAGNode):
        return fn(value)
    if type(value) in (list, tuple):
        return type(value)(_map_nodes(v, fn) for v in value)
    if type(value) is dict:
        return {k: _map_nodes(v, fn) for k, v in value.items()}
    return value


def _children_of(value, out: list) -> list:
    _map_nodes(value, lambda n: out.append(n))
    return out


class DAGNode:
    """A step of a lazy graph.  ``execute(*args, **kwargs)`` runs it; ``options(...)`` copies it with
    other task options."""

    def __init__(self, args=(), kwargs=None, options=None):
        self._bound_args = tuple(args)
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})
        self._stable_uuid = uuid.uuid4().hex

    # -- what Ray's DAGNode offers for reading a graph -------------------------------------------
    def get_args(self) -> tuple:
        return self._bound_args

    def get_kwargs(self) -> dict:
        return self._bound_kwargs

    def get_options(self) -> dict:
        return self._bound_options

    def get_stable_uuid(self) -> str:
        return self._stable_uuid

    def children(self) -> list:
        """The nodes this one takes as inputs, in argument order."""
        out = []
        for a in self._bound_args:
            _children_of(a, out)
        for v in self._bound_kwargs.values():
            _children_of(v, out)
        return out

    def label(self) -> str:
        return type(self).__name__

    def options(self, **options):
        clone = self._copy()
        clone._bound_options = {**self._bound_options, **options}
        return clone

    def _copy(self):
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._stable_uuid = uuid.uuid4().hex
        return clone

    def execute(self, *args, **kwargs):
        """Run the graph: ObjectRef(s) of this node's result (an ActorHandle for a ClassNode)."""
        return _Execution(DAGInputData(args, kwargs)).run(self)

    def _run(self, ex, args, kwargs):   # pragma: no cover - each kind says how it runs
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.label()}>"

    def __reduce__(self):
        """Pickles with cloudpickle inside, so ``pickle.dumps(dag)`` works for functions defined in
        ``__main__`` or a notebook, as Ray's DAGs do."""
        if getattr(_pickling, "active", False):
            return (_rebuild_node, (type(self), self.__dict__))
        import cloudpickle
        _pickling.active = True
        try:
            blob = cloudpickle.dumps(self)
        finally:
            _pickling.active = False
        return (_loads, (blob,))


_pickling = threading.local()


def _rebuild_node(cls, state):
    node = object.__new__(cls)
    node.__dict__.update(state)
    return node


def _loads(blob):
    import pickle
    return pickle.loads(blob)


class _Execution:
    """One ``execute()``: results memoised by node, so a node shared by two others runs once.  It
    walks the graph in topological order (no recursion: a chain of thousands of steps is fine)."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.memo: dict = {}

    def run(self, root):
        for node in walk(root):
            if id(node) not in self.memo:
                args = tuple(_map_nodes(a, self.result) for a in node._bound_args)
                kwargs = {k: _map_nodes(v, self.result) for k, v in node._bound_kwargs.items()}
                self.memo[id(node)] = (node, node._run(self, args, kwargs))   # the node kept: ids stay unique
        return self.memo[id(root)][1]

    def result(self, node):
        return self.memo[id(node)][1]


class FunctionNode(DAGNode):
    """``f.bind(...)``: a call of a remote function, made at ``execute()``."""

    def __init__(self, remote_function, args, kwargs, options=None):
        super().__init__(args, kwargs, options)
        self._body = remote_function

    def label(self) -> str:
        return self._bound_options.get("name") or self._body._function.__name__

    def _run(self, ex, args, kwargs):
        opts = {k: v for k, v in self._bound_options.items() if k != "_metadata"}
        target = self._body.options(**opts) if opts else self._body
        return target.remote(*args, **kwargs)


class ClassNode(DAGNode):
    """``Actor.bind(...)``: an actor created at ``execute()``; ``node.method.bind(...)`` calls it."""

    def __init__(self, actor_class, args, kwargs, options=None):
        super().__init__(args, kwargs, options)
        self._body = actor_class

    def label(self) -> str:
        return self._body.__name__

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._body._methods:
            raise AttributeError(f"Actor {self._body.__name__} has no method {name!r}. Its methods are: "
                                 f"{sorted(m for m in self._body._methods if not m.startswith('_'))}.")
        return _UnboundMethod(self, name)

    def _run(self, ex, args, kwargs):
        target = self._body.options(**self._bound_options) if self._bound_options else self._body
        return target.remote(*args, **kwargs)


class _UnboundMethod:
    """``class_node.method``: waits for ``.bind(...)`` (or ``.options(...)``)."""

    def __init__(self, owner, name, options=None):
        self._owner, self._name, self._opts = owner, name, dict(options or {})

    def options(self, **options):
        return _UnboundMethod(self._owner, self._name, {**self._opts, **options})

    def bind(self, *args, **kwargs):
        return ClassMethodNode(self._owner, self._name, args, kwargs, self._opts)


class ClassMethodNode(DAGNode):
    """A method call on a ClassNode's actor (or on a live actor handle), made at ``execute()``."""

    def __init__(self, owner, method_name, args, kwargs, options=None):
        super().__init__(args, kwargs, options)
        self._owner, self._method = owner, method_name

    def children(self) -> list:
        first = [self._owner] if isinstance(self._owner, DAGNode) else []
        return first + super().children()

    def label(self) -> str:
        owner = self._owner.label() if isinstance(self._owner, DAGNode) else self._owner._state["class_name"]
        return f"{owner}.{self._method}"

    def _run(self, ex, args, kwargs):
        handle = ex.result(self._owner) if isinstance(self._owner, DAGNode) else self._owner
        method = getattr(handle, self._method)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*args, **kwargs)


class DAGInputData:
    """What an InputNode stands for in one execution: ``args`` and ``kwargs`` of ``execute()``."""

    def __init__(self, args, kwargs):
        self.args, self.kwargs = tuple(args), dict(kwargs)

    def value(self):
        """One positional argument and no keywords: that value itself, as Ray gives it."""
        if len(self.args) == 1 and not self.kwargs:
            return self.args[0]
        return self

    def __getitem__(self, key):
        if isinstance(key, int):
            if key >= len(self.args):
                raise IndexError(f"InputNode()[{key}]: execute() got only {len(self.args)} positional "
                                 f"argument(s).")
            return self.args[key]
        if key not in self.kwargs:
            raise KeyError(f"InputNode()[{key!r}]: execute() got no keyword {key!r}; it got "
                           f"{sorted(self.kwargs)}.")
        return self.kwargs[key]


class InputNode(DAGNode):
    """The input of a DAG: stands for the arguments of ``execute()``.  ``inp[0]`` is the first
    positional one, ``inp["k"]`` and ``inp.k`` the keyword ``k`` (or, with a single input, its item or
    attribute).  Use it as ``with InputNode() as inp:`` or plainly ``inp = InputNode()``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def label(self) -> str:
        return "input"

    def __getitem__(self, key):
        return InputAttributeNode(self, key, "__getitem__")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return InputAttributeNode(self, name, "__getattr__")

    def _run(self, ex, args, kwargs):
        return ex.inputs.value()


class InputAttributeNode(DAGNode):
    """``inp[key]`` or ``inp.key``: one part of the DAG's input."""

    def __init__(self, input_node, key, accessor):
        super().__init__((input_node,), {}, {})
        self._key, self._accessor = key, accessor

    def label(self) -> str:
        return f"input[{self._key!r}]" if self._accessor == "__getitem__" else f"input.{self._key}"

    def resolve(self, inputs: DAGInputData):
        """This node's value for the given inputs (used by ``execute`` and by the workflow executor)."""
        whole = inputs.value()
        if isinstance(whole, DAGInputData):
            return whole[self._key]
        try:
            if self._accessor == "__getitem__":
                return whole[self._key]
            return getattr(whole, self._key)
        except (TypeError, KeyError, IndexError, AttributeError) as err:
            got = f"{type(whole).__name__} {whole!r:.40}"
            raise type(err)(f"{self.label()}: execute() got one argument ({got}), so the input node stands "
                            f"for that value and {self.label()} looks inside it ({err}). "
                            "Pass several arguments (or keywords) to index them instead.") from err

    def _run(self, ex, args, kwargs):
        return self.resolve(ex.inputs)


class MultiOutputNode(DAGNode):
    """Several outputs at once: ``execute()`` returns a list with one result per node."""

    def __init__(self, nodes, options=None):
        nodes = list(nodes)
        if not all(isinstance(n, DAGNode) for n in nodes):
            raise TypeError("MultiOutputNode takes a list of bound nodes, e.g. MultiOutputNode([a, b]).")
        super().__init__((nodes,), {}, options)

    def label(self) -> str:
        return "outputs"

    def _run(self, ex, args, kwargs):
        return list(args[0])


def walk(root: DAGNode) -> list:
    """Every node of the graph once, inputs before the nodes that take them (a topological order)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in reversed(node.children()):
            if id(child) not in seen:
                stack.append((child, False))
    return order
