"""``%tune``: every trial's learning curve of a Tune run, as a PNG (early stops and exploits marked).

    %tune                       the newest ResultGrid among the notebook's variables
    %tune results --metric loss a ResultGrid expression (miniray's or real Ray's)
    %tune ~/ray_results/my_exp  an experiment directory on disk (miniray's or Ray's layout)
    %tune grid --figsize 6,3    a smaller picture (inches at 100 dpi), e.g. to fit a slide

Drawing is ``miniray.tune.plot`` (ResultGrid.plot() draws the same picture); this module only finds
what to draw.  Bad input raises ``UsageError`` saying what was wrong.
"""
from __future__ import annotations

import os

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring


def _is_grid(value) -> bool:
    return (type(value).__name__ == "ResultGrid" and hasattr(value, "get_best_result")
            and hasattr(value, "experiment_path"))


@magics_class
class TuneMagics(Magics):
    """%tune: learning curves of a Tune experiment."""

    @magic_arguments()
    @argument("source", nargs="*", help="a ResultGrid expression or an experiment directory "
                                        "(default: the newest ResultGrid in the notebook)")
    @argument("--metric", help="the metric to draw (default: the experiment's TuneConfig metric)")
    @argument("--mode", choices=("min", "max"), help="which end is best (marks the best trial)")
    @argument("--save", metavar="FILE", help="also write the picture to FILE (.png)")
    @argument("--figsize", metavar="W,H", help="picture size in inches at 100 dpi "
                                               "(default 7.5,4: 750 x 400 pixels)")
    @line_magic
    def tune(self, line: str):
        """Draw every trial's metric over training_iteration: one line per trial, the best one
        thick, x where a scheduler stopped a trial early, o where PBT made it copy another.

        Works on miniray's ResultGrid, on real Ray's, and on an experiment directory.

        Example::

            results = tuner.fit()
            %tune results --metric loss --mode min --figsize 6,3
        """
        args = parse_argstring(self.tune, line)
        if args.save and not args.save.lower().endswith(".png"):
            raise UsageError(f"--save {args.save!r}: the file name must end in .png")
        figsize = _figsize(args.figsize) if args.figsize else None
        grid = self._find(" ".join(args.source).strip())
        from miniray.tune.plot import plot_results

        metric = args.metric or getattr(grid, "_metric", None)
        if metric is None:
            raise UsageError("%tune: which metric? Give --metric NAME (the experiment has no "
                             "TuneConfig metric to default to)")
        try:
            picture = plot_results(grid, metric=metric, mode=args.mode, figsize=figsize)
        except ValueError as exc:
            raise UsageError(f"%tune: {exc}") from None
        if args.save:
            picture.save(args.save)
        return picture

    def _find(self, source: str):
        if not source:
            grids = [v for k, v in self.shell.user_ns.items() if not k.startswith("_")
                     and _is_grid(v)]
            if not grids:
                raise UsageError("%tune: no ResultGrid in the notebook yet: run "
                                 "results = tuner.fit() first, or give an experiment directory")
            return max(grids, key=lambda g: _mtime(g.experiment_path))
        path = os.path.expanduser(source)
        if os.path.isdir(path):
            from miniray.tune.plot import ExperimentOnDisk

            try:
                return ExperimentOnDisk(path)
            except ValueError as exc:
                raise UsageError(f"%tune: {exc}") from None
        try:
            value = self.shell.ev(source)
        except Exception as exc:
            raise UsageError(f"%tune {source}: neither a directory nor an expression that "
                             f"works ({type(exc).__name__}: {exc})") from None
        if not _is_grid(value):
            raise UsageError(f"%tune {source}: that is a {type(value).__name__}, not a "
                             "ResultGrid (what tuner.fit() returns)")
        return value


def _figsize(text: str) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--figsize {text!r}: give width,height in inches, e.g. --figsize 6,3") \
            from None
    return width, height


def _mtime(path) -> float:
    try:
        return os.path.getmtime(path)
    except (OSError, TypeError):
        return 0.0
