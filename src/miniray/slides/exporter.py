"""``jupyter nbconvert --to remark``: a notebook as one self-contained remark.js slide deck.

    notebook --RemarkCellsPreprocessor (structure.py)--> cells with remark breaks
             --templates/remark/index.html.j2 + the filters below--> remark markdown
             --HTML-escaped into <textarea id="source">--> NB.slides.html
                                  (with remark.js and static/remark.css inlined)

The template writes the markdown; this module chooses what goes around it: where remark.js comes
from (``remark_js_path``, then ``$MINIRAY_REMARK_JS``, then the copy shipped in ``static/``
(remark 0.15.0, MIT, see ``static/remark.LICENSE.txt``), then the Debian and npm install paths, and
only when none is found the public CDN, with a loud warning; the page then shows a notice instead
of a blank screen when the CDN cannot be reached) and how outputs are made safe inside
remark's markdown (remark scans the whole text for ``---``, ``.class[`` and backticks before the
markdown is rendered, so output text is escaped where remark would read it).
"""
from __future__ import annotations

import base64
import glob
import html
import os
import re
import sys
from pathlib import Path

from nbconvert.exporters import TemplateExporter
from traitlets import Bool, Dict, List, Unicode, default

from .structure import data_uri

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STYLESHEET = HERE / "static" / "remark.css"
BUNDLED_REMARK_JS = HERE / "static" / "remark.min.js"
CDN_URL = "https://remarkjs.com/downloads/remark-latest.min.js"
ENV_VAR = "MINIRAY_REMARK_JS"

NO_REMARK_WARNING = (
    "\n*** remark.js NOT FOUND: this deck links %s and will show only a notice when presented "
    "offline. ***\nThe copy miniray ships (%s) is missing: reinstall miniray "
    "(pip install --force-reinstall miniray), install Debian's libjs-remark-slide, run "
    "`npm install remark-slide` here, or set $%s to a remark.min.js.")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
_OUTPUT_MIMES = _IMAGE_MIMES + ("text/html", "text/markdown", "text/plain")
# Characters that remark's lexer would act on, written as HTML character references instead.
_REMARK_SAFE = {"[": "&#91;", "]": "&#93;", "`": "&#96;", "{": "&#123;", "}": "&#125;"}
_RAW_TEXT_ELEMENT = re.compile(r"(<(style|script)\b.*?</\2\s*>)", re.IGNORECASE | re.DOTALL)


def default_search_paths() -> list[str]:
    """Glob patterns where an installed remark.js may live, in the order they are tried."""
    roots = [sys.prefix, "/usr/local", "/usr"]
    patterns = [str(BUNDLED_REMARK_JS)]
    for root in roots:
        patterns += [f"{root}/share/javascript/remark-slide/remark.min.js",
                     f"{root}/share/javascript/remark*/remark*.min.js",
                     f"{root}/share/javascript/remark*/remark.js"]
    for base in ["node_modules", *(f"{r}/lib/node_modules" for r in roots)]:
        patterns += [f"{base}/remark-slide/**/remark*.min.js", f"{base}/remark-slide/**/remark.js"]
    return patterns


def find_remark_js(explicit: str = "", patterns: list[str] | None = None) -> Path | None:
    """The remark.js file to inline: ``explicit`` if given (it must exist), else the first match."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"remark.js not found at {path} (set by RemarkExporter.remark_js_path or "
                f"${ENV_VAR}). Point it at remark.min.js, or unset it to use the installed copy "
                "(Debian: apt-get install libjs-remark-slide).")
        return path
    for pattern in default_search_paths() if patterns is None else patterns:
        for match in sorted(glob.glob(pattern, recursive=True)):
            if Path(match).is_file():
                return Path(match)
    return None


def script_is_inline_safe(js: str) -> bool:
    """True when ``js`` can sit between <script> tags without ending or hiding the element."""
    lowered = js.lower()
    if "</script" in lowered:
        return False
    return re.search(r"<!--(?:(?!-->).)*<script", lowered, re.DOTALL) is None


# -- Jinja filters ------------------------------------------------------------------------------
def terminal_text(text: str) -> str:
    """Text as a terminal would show it: no ANSI codes, carriage returns and backspaces applied."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        line = line.rstrip("\r").rsplit("\r", 1)[-1]  # what the last overwrite left
        while "\x08" in line:  # a backspace erases the character before it
            line = re.sub("[^\x08]\x08", "", line, count=1).lstrip("\x08")
        lines.append(line)
    return "\n".join(lines).replace("\u00a0", " ")


def remark_fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _remark_safe_text(text: str) -> str:
    text = "".join(_REMARK_SAFE.get(ch, ch) for ch in text)
    # A line that is only ---, -- or ??? would start a slide, step or notes.
    return re.sub(r"(?m)^(---|--|\?\?\?)$", lambda m: "&#%d;" % ord(m.group(1)[0])
                  + m.group(1)[1:], text)


def remark_pre(text: str, kind: str = "stream") -> str:
    """Plain output text as one raw-HTML <pre> block that remark passes through untouched."""
    body = _remark_safe_text(html.escape(terminal_text(text).rstrip("\n"), quote=False))
    return f'<pre class="remark-output {kind}">{body}</pre>'


def remark_html(markup: str) -> str:
    """Rich HTML output made safe as one raw-HTML block inside remark's markdown."""
    pieces = _RAW_TEXT_ELEMENT.split(markup)
    out = []
    for i, piece in enumerate(pieces):
        if i % 3 == 2:
            continue  # the tag-name group of the split
        out.append(piece if i % 3 == 1 else _remark_safe_text(piece))
    # Markdown ends a raw-HTML block at a blank line: drop blank lines.
    lines = [line for line in "".join(out).split("\n") if line.strip()]
    return '<div class="remark-output html">\n' + "\n".join(lines) + "\n</div>"


def remark_image(output, mime: str) -> str:
    """An image output as an <img> tag with a data: URI."""
    meta = output.get("metadata", {}).get(mime, {}) or {}
    size = "".join(f' {k}="{int(meta[k])}"' for k in ("width", "height") if k in meta)
    uri = data_uri(mime, output["data"][mime])
    return f'<div class="remark-output image"><img src="{uri}" alt="output"{size}></div>'


def output_mime(output) -> str | None:
    """The richest representation of a display_data or execute_result output we can show."""
    data = output.get("data", {})
    return next((m for m in _OUTPUT_MIMES if m in data), None)


class RemarkExporter(TemplateExporter):
    """Export a notebook as a remark.js deck: one self-contained ``NB.slides.html``."""

    export_from_notebook = "Remark slides"
    output_mimetype = "text/html"

    remark_js_path = Unicode(
        help=f"remark.js file to inline into the deck. Defaults to ${ENV_VAR}, then to an "
             "installed copy (Debian libjs-remark-slide, npm remark-slide).").tag(config=True)
    remark_js_search = List(Unicode(), help="Glob patterns tried for remark.js when no path is "
                            "set.").tag(config=True)
    remark_cdn_url = Unicode(CDN_URL, help="remark.js URL linked when no copy is installed."
                             ).tag(config=True)
    highlight_style = Unicode("github", help="remark's highlightStyle for code.").tag(config=True)
    ratio = Unicode("16:9", help="Slide aspect ratio.").tag(config=True)
    count_incremental_slides = Bool(False, help="Count -- steps in slide numbers."
                                    ).tag(config=True)
    remark_options = Dict(help="Extra options passed to remark.create().").tag(config=True)

    @default("remark_js_path")
    def _remark_js_path_default(self):
        return os.environ.get(ENV_VAR, "")

    @default("remark_js_search")
    def _remark_js_search_default(self):
        return default_search_paths()

    @default("file_extension")
    def _file_extension_default(self):
        return ".slides.html"

    @default("template_name")
    def _template_name_default(self):
        return "remark"

    @default("template_extension")
    def _template_extension_default(self):
        return ".html.j2"

    @default("extra_template_basedirs")
    def _extra_template_basedirs_default(self):
        return [str(TEMPLATES), os.getcwd()]

    def default_filters(self):
        yield from super().default_filters()
        yield "terminal_text", terminal_text
        yield "remark_fence", remark_fence
        yield "remark_pre", remark_pre
        yield "remark_html", remark_html
        yield "remark_image", remark_image
        yield "output_mime", output_mime

    def _init_resources(self, resources):
        resources = super()._init_resources(resources)
        resources["remark"] = {
            "css": STYLESHEET.read_text(encoding="utf-8"),
            "options": {"ratio": self.ratio, "highlightStyle": self.highlight_style,
                        "countIncrementalSlides": self.count_incremental_slides,
                        **self.remark_options},
            **self._remark_script(),
        }
        return resources

    def _remark_script(self) -> dict:
        """How the deck gets remark.js: inline text, an inline data: URI, or the CDN link."""
        path = find_remark_js(self.remark_js_path, self.remark_js_search)
        if path is None:
            self.log.warning(NO_REMARK_WARNING, self.remark_cdn_url, BUNDLED_REMARK_JS, ENV_VAR)
            return {"script_text": None, "script_src": self.remark_cdn_url, "js_path": None,
                    "cdn_url": self.remark_cdn_url}
        js = path.read_text(encoding="utf-8")
        if script_is_inline_safe(js):
            return {"script_text": js, "script_src": None, "js_path": str(path)}
        uri = "data:text/javascript;base64," + base64.b64encode(js.encode()).decode("ascii")
        return {"script_text": None, "script_src": uri, "js_path": str(path)}
