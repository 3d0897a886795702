"""Give a notebook remark's slide structure before the deck template renders it.

``RemarkCellsPreprocessor`` runs on the exporter's copy of the notebook (never the source file)::

    cells --drop "skip" cells--> --split markdown at its own ---, --, ??? lines--> pieces
          --drop empty pieces (their break moves to the next piece)-->
          --group into steps; notes move to the end of their step-->
          --embed attachment: and local image paths as data: URIs--> cells for the template

Each cell that comes out carries two metadata keys that the template reads:

* ``remark_break``: ``"slide"`` (write ``---`` first), ``"fragment"`` (write ``--``) or ``""``;
* ``remark_notes``: true on the first notes piece of a step (write ``???`` first).

Cell metadata ``slideshow.slide_type`` sets a cell's break: slide and subslide start a slide,
fragment an incremental step, notes make presenter notes, skip drops the cell and ``-`` continues.
Notes end at the cell boundary: the cell after a notes cell is back on the slide.
The preprocessor owns no state between notebooks; it adds ``remark_slide_count`` and
``remark_title`` (the first heading) to resources.
"""
from __future__ import annotations

import base64
import copy
import mimetypes
import os
import re
from urllib.parse import unquote, urlparse

from nbconvert.preprocessors import Preprocessor

SEPARATORS = {"---": "slide", "--": "fragment", "???": "notes"}
_STRENGTH = {"": 0, "fragment": 1, "slide": 2}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_IMAGE = re.compile(r"(!\[[^\]]*\]\(\s*<?)([^)\s>]+)")
_HTML_IMAGE = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*["'])([^"']+)""", re.IGNORECASE)
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp")


def split_remark(source: str) -> list[tuple[str, str]]:
    """Split markdown at remark's separator lines that lie outside code fences.

    Returns ``[(kind, text), ...]``; the first kind is ``""`` and the others name the separator
    that came before their text: ``"slide"`` (---), ``"fragment"`` (--) or ``"notes"`` (???).
    """
    parts: list[tuple[str, str]] = []
    kind, lines, fence = "", [], None
    for line in source.split("\n"):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) \
                and set(line.strip()) == {fence[0]}:
            fence = None
        elif fence is None and line in SEPARATORS:
            parts.append((kind, "\n".join(lines)))
            kind, lines = SEPARATORS[line], []
            continue
        lines.append(line)
    parts.append((kind, "\n".join(lines)))
    return parts


def data_uri(mime: str, data: str | bytes) -> str:
    """A ``data:`` URI.  ``data`` is base64 text for binary types, plain text for SVG."""
    if mime == "image/svg+xml" or isinstance(data, bytes):
        raw = data.encode() if isinstance(data, str) else data
        data = base64.b64encode(raw).decode("ascii")
    return f"data:{mime};base64,{''.join(data.split())}"


def _slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") or "-"


def _raw_is_markdown(cell) -> bool:
    meta = cell.get("metadata", {})
    fmt = (meta.get("raw_mimetype") or meta.get("format") or "").lower()
    return fmt in ("", "text/markdown", "text/x-markdown", "text/html")


def _is_empty(cell) -> bool:
    return not cell.source.strip() and not cell.get("outputs")


class RemarkCellsPreprocessor(Preprocessor):
    """Turn notebook cells into remark slide pieces; see the module docstring."""

    def preprocess(self, nb, resources):
        folder = (resources or {}).get("metadata", {}).get("path") or "."
        pieces = self._pieces(nb.cells)
        for cell, _ in pieces:
            if cell.cell_type == "markdown":
                cell.source = self._embed_images(cell, folder)
            elif cell.cell_type == "code":
                cell.outputs = _merge_streams(cell.get("outputs", []))
        nb.cells = self._order_steps(pieces)
        resources["remark_slide_count"] = 1 + sum(
            c.metadata["remark_break"] == "slide" for c in nb.cells)
        headings = (m.group(1) for c in nb.cells if c.cell_type == "markdown"
                    for m in [re.search(r"(?m)^#{1,2} +(.+?) *#*$", c.source)] if m)
        resources["remark_title"] = next(headings, "")
        return nb, resources

    # -- structure -------------------------------------------------------------------------------
    def _pieces(self, cells) -> list[tuple[object, bool]]:
        """Split cells into (piece, is_notes), each piece carrying its break in metadata."""
        pieces: list[tuple[object, bool]] = []
        pending = ""  # break of dropped empty pieces, handed to the next kept piece
        for cell in cells:
            slide_type = _slide_type(cell)
            if slide_type == "skip" or (cell.cell_type == "raw" and not _raw_is_markdown(cell)):
                continue
            own_break = {"slide": "slide", "subslide": "slide", "fragment": "fragment"}
            first = (own_break.get(slide_type, ""), slide_type == "notes")
            if cell.cell_type in ("markdown", "raw"):
                parts = split_remark(cell.source)
            else:
                parts = [("", cell.source)]
            for i, (sep, text) in enumerate(parts):
                brk, notes = first if i == 0 else (("", True) if sep == "notes" else (sep, False))
                piece = copy.deepcopy(cell)
                if i and "id" in piece:  # cell ids must stay unique
                    piece.id = f"{piece.id[:56]}-{i}"
                piece.cell_type = "markdown" if cell.cell_type == "raw" else cell.cell_type
                piece.source = text.strip("\n") if piece.cell_type == "markdown" else text
                if _is_empty(piece):
                    pending = max(pending, brk, key=_STRENGTH.get)
                    continue
                piece.metadata["remark_break"] = max(pending, brk, key=_STRENGTH.get)
                pending = ""
                pieces.append((piece, notes))
        if pieces:
            pieces[0][0].metadata["remark_break"] = ""  # the first slide needs no separator
        return pieces

    @staticmethod
    def _order_steps(pieces) -> list:
        """Within each step, put the slide body first and the notes after it."""
        steps: list[list[tuple[object, bool]]] = []
        for piece, notes in pieces:
            if not steps or piece.metadata["remark_break"]:
                steps.append([])
            steps[-1].append((piece, notes))
        ordered = []
        for step in steps:
            brk = step[0][0].metadata["remark_break"]
            body = [p for p, notes in step if not notes]
            notes = [p for p, is_notes in step if is_notes]
            for p in body + notes:
                p.metadata["remark_break"] = ""
                p.metadata["remark_notes"] = False
            if notes:
                notes[0].metadata["remark_notes"] = True
            (body + notes)[0].metadata["remark_break"] = brk
            ordered.extend(body + notes)
        return ordered

    # -- images ----------------------------------------------------------------------------------
    def _embed_images(self, cell, folder: str) -> str:
        """Replace attachment: links and local image paths with data: URIs."""
        attachments = cell.get("attachments") or {}

        def swap(match: re.Match) -> str:
            target = match.group(2)
            uri = None
            if target.startswith("attachment:"):
                bundle = attachments.get(unquote(target[len("attachment:"):]), {})
                mime = next((m for m in _IMAGE_TYPES if m in bundle), None)
                uri = data_uri(mime, bundle[mime]) if mime else None
                if uri is None:
                    self.log.warning("slide image %s: no such attachment in its cell", target)
            elif not urlparse(target).scheme and not target.startswith(("/", "#")):
                uri = self._file_uri(os.path.join(folder, unquote(target)))
            return match.group(1) + (uri or target)

        text = _MD_IMAGE.sub(swap, cell.source)
        return _HTML_IMAGE.sub(swap, text)

    def _file_uri(self, path: str) -> str | None:
        mime = mimetypes.guess_type(path)[0]
        if mime not in _IMAGE_TYPES:
            return None
        try:
            with open(path, "rb") as f:
                return data_uri(mime, f.read())
        except OSError:
            self.log.warning("slide image %s not found; the deck links it instead of embedding",
                             path)
            return None


def _merge_streams(outputs: list) -> list:
    """Join consecutive stream outputs of the same name (stdout or stderr) into one."""
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and last is not None
                and last.get("output_type") == "stream" and last.get("name") == out.get("name")):
            last["text"] = last["text"] + out["text"]
        else:
            merged.append(copy.deepcopy(out))
    return merged
