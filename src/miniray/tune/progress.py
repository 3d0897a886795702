"""The live trial table: a widget updated in place in Jupyter, a compact text table in a terminal.

    controller main loop ──update(controller)──► Reporter (throttled) ──► ipywidgets.HTML.value
                                                                      └─► print(table) every 5 s
    close(controller) ──► the final table, as static HTML in a notebook (it survives nbconvert)

Verbosity (RunConfig.verbose): 0 nothing, 1 one closing line, 2 the table (default), 3 the table
and a line per finished trial.  The table shows status counts, the best trial so far, the running
trials and the best finished ones: never more than ``max_rows`` rows.
"""
from __future__ import annotations

import html
import sys
import time

from miniray.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED
from miniray.tune.utils import flat


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_rows(trials, metric, mode, max_rows: int = 12):
    """(header, rows, summary): running trials first, then the best finished, then the rest."""
    params = []
    for t in trials:
        for key in t.evaluated_params:
            if key not in params:
                params.append(key)
    params = params[:4]
    header = ["Trial name", "status"] + params + ["iter"] + ([metric] if metric else [])
    sign = 1 if mode == "max" else -1

    def score(t):
        value = flat(t.last_result).get(metric) if metric else None
        return -float("inf") if value is None else sign * value

    order = {RUNNING: 0, PAUSED: 1, TERMINATED: 2, ERROR: 3, PENDING: 4}
    ranked = sorted(trials, key=lambda t: (order[t.status], -score(t)))
    rows = []
    for t in ranked[:max_rows]:
        row = [str(t), t.status] + [_fmt(t.evaluated_params.get(p, "")) for p in params]
        row.append(str(t.last_result.get("training_iteration", "")))
        if metric:
            row.append(_fmt(flat(t.last_result).get(metric, "")))
        rows.append(row)
    counts = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    hidden = len(trials) - len(rows)
    if hidden > 0:
        summary += f" ({hidden} more not shown)"
    return header, rows, summary


def best_line(trials, metric, mode) -> str:
    if not metric:
        return ""
    scored = [t for t in trials if metric in flat(t.last_result)]
    if not scored:
        return ""
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda t: flat(t.last_result)[metric])
    return f"best {metric}={_fmt(flat(best.last_result)[metric])}: {best} {best.evaluated_params}"


def text_table(trials, metric, mode, elapsed: float) -> str:
    header, rows, summary = table_rows(trials, metric, mode)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else []
    lines = [f"== Tune: {len(trials)} trials: {summary} | {elapsed:.1f} s ==",
             best_line(trials, metric, mode)]
    if rows:
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(line for line in lines if line)


def html_table(trials, metric, mode, elapsed: float, done: bool = False) -> str:
    header, rows, summary = table_rows(trials, metric, mode)
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>"
                   for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(c)}</td>"
                                    for c in row) + "</tr>" for row in rows)
    state = "finished" if done else "running"
    best = html.escape(best_line(trials, metric, mode))
    return (f"<div class='miniray-tune'><b>Tune {state}</b>: {len(trials)} trials, "
            f"{html.escape(summary)}, {elapsed:.1f} s<br/><small>{best}</small>"
            f"<table style='font-family:monospace;font-size:12px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


class Reporter:
    def __init__(self, verbose: int, metric, mode):
        self.verbose, self.metric, self.mode = verbose, metric, mode
        self.started = time.time()
        self.last = 0.0

    def update(self, controller) -> None:
        pass

    def trial_done(self, controller, trial) -> None:
        if self.verbose >= 3:
            value = flat(trial.last_result).get(self.metric) if self.metric else None
            extra = f" {self.metric}={_fmt(value)}" if value is not None else ""
            print(f"Trial {trial} {trial.status}{' (stopped early)' if trial.stopped_early else ''}"
                  f" after {trial.last_result.get('training_iteration', 0)} iterations{extra}")

    def close(self, controller) -> None:
        if self.verbose >= 1:
            trials = controller.trials
            print(f"Tune finished: {len(trials)} trials in {time.time() - self.started:.2f} s. "
                  + best_line(trials, self.metric, self.mode))


class TerminalReporter(Reporter):
    interval = 5.0

    def update(self, controller) -> None:
        now = time.time()
        if self.verbose >= 2 and now - self.last >= self.interval and now - self.started > 2.0:
            self.last = now
            print(text_table(controller.trials, self.metric, self.mode, now - self.started),
                  flush=True)

    def close(self, controller) -> None:
        if self.verbose >= 2:
            print(text_table(controller.trials, self.metric, self.mode,
                             time.time() - self.started), flush=True)
        elif self.verbose == 1:
            super().close(controller)


class NotebookReporter(Reporter):
    """An ipywidgets.HTML updated in place while the run lasts; a static table at the end."""

    interval = 0.3

    def __init__(self, verbose, metric, mode):
        super().__init__(verbose, metric, mode)
        self.widget = None

    def update(self, controller) -> None:
        now = time.time()
        if now - self.last < self.interval:
            return
        self.last = now
        text = html_table(controller.trials, self.metric, self.mode, now - self.started)
        if self.widget is None:
            import ipywidgets
            from IPython.display import display

            self.widget = ipywidgets.HTML(value=text)
            display(self.widget)
        else:
            self.widget.value = text

    def close(self, controller) -> None:
        from IPython.display import HTML, display

        if self.widget is not None:
            self.widget.close()
        display(HTML(html_table(controller.trials, self.metric, self.mode,
                                time.time() - self.started, done=True)))


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if not shell or not hasattr(shell, "kernel"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def make_reporter(verbose: int, metric, mode, custom=None) -> Reporter:
    if custom is not None:
        return custom
    if verbose >= 2 and _in_notebook():
        return NotebookReporter(verbose, metric, mode)
    return TerminalReporter(verbose, metric, mode)
