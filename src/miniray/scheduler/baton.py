"""Who runs a step of the node's loop: the baton, its three entry points, and the Ctrl-C hold.

A *step* (``Node._step``, scheduler/step.py) reads what arrived, handles it, schedules and sends.
It changes the scheduler state, the tables and the waiters, so only one thread runs a step at a
time: the one holding ``baton`` (an RLock).  Three entry points take it:

  - ``run``: the node thread's main loop (below).  It selects on the node's sockets and runs a step
    for what arrived.  While a driver drives (see ``drive``) it parks instead.
  - ``offer``: ``.remote()`` on the driver takes the baton if it is free and runs a step there and
    then, so a call goes straight from the driver thread to its worker's socket (Ray's direct calls,
    within one process).  A call for a worker still busy with earlier calls waits in its outbox for
    the next step, so a burst of submissions goes out in batches.
  - ``drive``: a driver blocked in ``get`` selects on the node's sockets itself until its objects
    are ready; the node thread parks meanwhile, and the worker's reply wakes the driver directly.
    It polls for a moment before it sleeps (framing.SPIN_S), as a worker does between calls.

Waking: ``wake`` writes a byte the node thread's select sees (items in the inbox, a new timed
wait); ``_poke`` wakes a driving driver whose object became ready in another thread's step.

State: ``baton``, ``driving`` (the driver runs the loop), ``_park`` (the node thread waits on it
while the driver drives), the wake and poke socket pairs, and the held Ctrl-C (``_sigint``).
A KeyboardInterrupt never lands inside a step run by the driver (``_hold_interrupts``): a step cut
in half would leave the scheduler's state half changed.
"""
from __future__ import annotations

import _signal
import os
import signal
import socket
import threading
import time

from miniray import exceptions as exc
from miniray.transport.framing import SPIN_S

PARK_S = 0.002          # the parked node thread looks this often whether the driver still drives,
LONG_DRIVE_S = 0.02     # for this long; after it, it sleeps until the drive's end wakes it
_MAIN_IDENT = threading.main_thread().ident


def _socketpair():
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    return r, w


class Baton:
    """Mixed into ``Node``: runs its ``_step`` on the node thread or on the driver's."""

    def _init_baton(self):
        self.baton = threading.RLock()         # held for each step, by whichever thread runs it
        self._stepping, self._stepper = False, None
        self.wake_pending = False
        self._wake_r, self._wake_w = _socketpair()          # wakes the node thread (``wake``)
        self._poke_r, self._poke_w = _socketpair()          # wakes a driving driver (``_poke``)
        self.driving = False                   # the driver thread runs the loop (``drive``)
        self._drive_start = 0.0
        self._driver_ident = None
        self._drive_lock = threading.Lock()
        self._park = threading.Condition(threading.Lock())
        self._sigint = None                    # (signal, frame) of a Ctrl-C held during a step
        self._sigint_prev, self._holding = None, False
        self._guard = self._sigint_guard       # one bound method, so ``is`` can recognise it
        self.thread = threading.Thread(target=self.run, name="miniray-node", daemon=True)

    # The node thread's main loop ------------------------------------------------------------------
    def run(self):
        try:
            while not self._stopping:
                events = self.selector.select(self._next_deadline())
                if self.driving:        # the driver runs the steps while it waits; it saw these too
                    with self._park:    # looked at every PARK_S, not woken when a short drive ends:
                        while self.driving and not self._stopping:   # a driver making round trips
                            long = time.monotonic() - self._drive_start > LONG_DRIVE_S   # would
                            self._park.wait(None if long else PARK_S)  # hand it the GIL each time
                    continue
                with self.baton:
                    self._step(events)
        finally:                        # nothing is sealed any more: no get may wait for ever
            self.store.abort_watches()

    def wake(self):
        if self.wake_pending:
            return
        self.wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # The driver's two entry points ----------------------------------------------------------------
    def offer(self, client, items):
        """Items from the driver (any of its threads): handled at once on the caller's thread when
        the baton is free, else by the node thread, woken for them."""
        self.inbox.append((client, items))
        if self._stopping or not self.baton.acquire(blocking=False):
            self.wake()
            return
        try:
            if not self._stepping:       # not re-entered from a step (which drains the inbox itself)
                self._step_holding_interrupts((), inline=True)
        finally:
            self.baton.release()

    def drive(self, event, deadline, spin=True) -> bool | None:
        """Run the loop on this thread until ``event`` is set (True) or ``deadline`` passes (False).
        None: another thread is driving already, so wait on the event instead."""
        me = threading.get_ident()
        if me in (self.thread.ident, self._stepper) or not self._drive_lock.acquire(blocking=False):
            return None            # the node thread, a step (a __del__ run by GC inside one) or a second driver
        self._driver_ident, event.poke = me, self._poke
        self._drive_start = time.monotonic()
        self.driving = True
        try:
            while not event.is_set():
                if self._stopping or not self.thread.is_alive():
                    raise exc.RaySystemError(exc.NODE_STOPPED)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                limits = [1.0, self._next_deadline(), None if deadline is None else deadline - now]
                # the node thread may select on the same epoll too: level-triggered, an event that
                # wakes it wakes us as well, and it parks without touching it
                events = self.selector.select(0)
                spin_until = time.perf_counter() + (SPIN_S if spin else 0.0)   # poll, then sleep
                while not events and time.perf_counter() < spin_until:
                    os.sched_yield()
                    events = self.selector.select(0)
                if not events:
                    events = self.selector.select(min(t for t in limits if t is not None))
                if event.is_set():
                    break
                with self.baton:
                    self._step_holding_interrupts(events)
            return True
        finally:
            event.poke = self._driver_ident = None
            if time.monotonic() - self._drive_start > LONG_DRIVE_S:   # ``run`` waits to be told
                with self._park:
                    self.driving = False
                    self._park.notify_all()
            else:
                self.driving = False    # the node thread sees it within PARK_S (see ``run``)
            self._drive_lock.release()

    def _poke(self):
        """An object the driving thread waits for became ready in another thread's step."""
        if threading.get_ident() != self._driver_ident:
            try:
                self._poke_w.send(b"\0")
            except OSError:
                pass

    def _unpark(self):
        """The node stops: a parked node thread looks again at once."""
        with self._park:
            self._park.notify_all()

    # The Ctrl-C hold ------------------------------------------------------------------------------
    def _step_holding_interrupts(self, events, inline=False):
        """A step on the driver's thread, with a Ctrl-C held to its end (``_hold_interrupts``)."""
        held = self._hold_interrupts()
        try:
            self._step(events, inline)
        finally:
            if held:
                self._release_interrupts()

    def _hold_interrupts(self) -> bool:
        """Hold a Ctrl-C that arrives during a step on the main thread, and raise it after
        (``_release_interrupts``, when this returned True).  ``_sigint_guard`` is installed in
        front of the user's handler once (again if someone replaced it, as IPython does per cell);
        outside steps it passes Ctrl-C straight on.  Plain methods, not a context manager: this
        runs per call."""
        if threading.get_ident() != _MAIN_IDENT:
            return False
        current = _signal.getsignal(signal.SIGINT)      # the C call: no enum conversion per step
        if current is not self._guard:
            if not callable(current):
                return False
            self._sigint_prev = current
            _signal.signal(signal.SIGINT, self._guard)
        self._holding = True
        return True

    def _release_interrupts(self) -> None:
        self._holding = False
        held, self._sigint = self._sigint, None
        if held is not None:
            self._sigint_prev(*held)

    def _sigint_guard(self, sig, frame):
        if self._holding:
            self._sigint = (sig, frame)
        else:
            self._sigint_prev(sig, frame)

    def _close_baton(self):
        """At the node's stop: give Ctrl-C back to the user's handler, close the wake sockets."""
        if (threading.get_ident() == _MAIN_IDENT
                and _signal.getsignal(signal.SIGINT) is self._guard):
            _signal.signal(signal.SIGINT, self._sigint_prev)
        for sock in (self._wake_r, self._wake_w, self._poke_r, self._poke_w):
            sock.close()
