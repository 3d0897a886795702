"""Lessons as slide decks: the remark.js nbconvert exporter and the ``miniray slides`` builder.

``jupyter nbconvert --to remark NB.ipynb`` writes ``NB.slides.html`` through ``RemarkExporter``
(registered as the ``remark`` entry point in the ``nbconvert.exporters`` group);
``miniray slides`` (``build.main``) builds every lesson notebook into ``slides/``.
"""

__all__ = ["RemarkExporter"]


def __getattr__(name):
    # Import nbconvert only when the exporter is asked for: ``miniray`` itself must stay light.
    if name == "RemarkExporter":
        from .exporter import RemarkExporter

        return RemarkExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
