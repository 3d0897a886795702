"""What a student sees when a call into miniray fails: their own lines, not the runtime's.

    exception raised in the driver ──► sys.excepthook (plain Python)   ──┐
                                   └─► IPython's custom exception hook ──┴─► without_internals(tb)
                                                                            ──► the usual printer

A failed task reaches the driver as ``RayTaskError`` raised deep inside ``runtime.py``; printed as
is, the traceback opens with frames of ``api.py`` and ``runtime.py`` and ends in
``raise pickle.loads(...)`` before the remote part that names the student's line.  ``install()``
(called by ``miniray.init()``) wraps the two places that print uncaught errors so that frames from
files inside the miniray package are left out; the user's frames, and the remote traceback in the
message, stay.  A Ctrl-C that interrupts ``get`` or ``wait`` prints one line saying so.

Frames are dropped only at display time, by building a new traceback chain (plain Python's printer
reads ``__traceback__``, so there the exception is given the shorter chain as it is printed).  ``MINIRAY_FULL_TRACEBACKS=1`` turns all of it off (for
debugging miniray itself).  When an error that miniray does not raise on purpose loses frames, a
note under it says how to see them.
"""
from __future__ import annotations

import os
import sys
import types

ENV_VAR = "MINIRAY_FULL_TRACEBACKS"
_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep
_HINT = f"(frames inside miniray are hidden; set {ENV_VAR}=1 to see them)"


def full_tracebacks() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


def is_internal(frame) -> bool:
    return os.path.abspath(frame.f_code.co_filename).startswith(_PKG)


def without_internals(tb):
    """A copy of the traceback chain ``tb`` without frames from files inside the miniray package
    (``tb`` itself when nothing is dropped, or when every frame is internal)."""
    entries, dropped, tb_start = [], False, tb
    while tb is not None:
        if is_internal(tb.tb_frame):
            dropped = True
        else:
            entries.append(tb)
        tb = tb.tb_next
    if not dropped or not entries:  # nothing to drop, or nothing would be left
        return tb_start
    chain = None
    for entry in reversed(entries):
        chain = types.TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return chain


def _trimmed(value: BaseException, tb):
    """``(tb to print, exception_only)`` for an uncaught ``value``."""
    if full_tracebacks():
        return tb, False
    trimmed = without_internals(tb)
    if trimmed is tb or tb is None:
        return tb, False
    if isinstance(value, KeyboardInterrupt) and getattr(value, "miniray_waiting", False):
        return trimmed, True
    from miniray.exceptions import RayError

    # miniray's own errors, and the TypeError/ValueError its argument checks raise, say what to do;
    # anything else may be a bug in miniray itself, so say how to see where it came from
    if not isinstance(value, (RayError, KeyboardInterrupt, TypeError, ValueError)) \
            and _HINT not in getattr(value, "__notes__", ()):
        value.add_note(_HINT)
    return trimmed, False


def _excepthook(etype, value, tb, _previous=[None]):  # noqa: B006 - holds the hook we wrap
    tb, exception_only = _trimmed(value, tb)
    tb = None if exception_only else tb
    if isinstance(value, BaseException):  # the printer reads the exception's own __traceback__
        value.with_traceback(tb)
    (_previous[0] or sys.__excepthook__)(etype, value, tb)


def _ipython_handler(shell, etype, value, tb, tb_offset=None):
    trimmed, exception_only = _trimmed(value, tb)
    if exception_only:          # one line, without IPython's "use %tb" preamble
        shell._showtraceback(etype, value, shell.InteractiveTB.get_exception_only(etype, value))
    elif trimmed is tb:         # nothing of miniray's in it: exactly what IPython would show
        shell.showtraceback(running_compiled_code=True)
    else:
        shell.showtraceback((etype, value, trimmed), tb_offset=tb_offset)


def install() -> None:
    """Hide miniray's frames from uncaught errors in plain Python and in IPython (idempotent)."""
    if sys.excepthook is not _excepthook:
        _excepthook.__defaults__[0][0] = sys.excepthook
        sys.excepthook = _excepthook
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython() if "IPython" in sys.modules else None
    if shell is not None and not getattr(shell, "_miniray_tracebacks", False) \
            and not shell.custom_exceptions:  # a handler the user set stays theirs
        shell.set_custom_exc((Exception, KeyboardInterrupt), _ipython_handler)
        shell._miniray_tracebacks = True


def interrupted(what: str) -> KeyboardInterrupt:
    """The KeyboardInterrupt to raise when Ctrl-C stops ``what``: printed as one line."""
    err = KeyboardInterrupt(f"{what} was interrupted (Ctrl-C). The tasks keep running and their "
                            "ObjectRefs stay valid: get them again, or miniray.cancel() them.")
    err.miniray_waiting = True
    return err
