"""``track``: the progress bar of ``miniray.get(refs, progress=True)``; it lives in miniray/progress.py,
beside the public API that draws it (a library module would sit above the API in the layers)."""
from miniray.progress import track

__all__ = ["track"]
