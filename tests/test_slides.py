"""The remark slide exporter and ``miniray slides``, checked on real notebooks, kernels, Chromium.

A small deck notebook is built with nbformat (slide types, remark dialect, a matplotlib PNG, an HTML
table, an error with ANSI codes, an attachment, a local image) and exported; the tests read the
markdown back out of the page the way remark does, run ``jupyter nbconvert --to remark`` and
``build.main`` for real, and render the deck in headless Chromium.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from miniray.slides import build
from miniray.slides.exporter import (RemarkExporter, find_remark_js, remark_fence, remark_pre,
                                     terminal_text)
from miniray.slides.structure import split_remark

VENV_BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell")
ANSI_TRACEBACK = ["\x1b[0;31mZeroDivisionError\x1b[0m Traceback (most recent call last)",
                  "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n----> 1 x.values[0] / 0",
                  "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]
TABLE = ('<div>\n<style scoped>\n    .dataframe td { color: black; }\n</style>\n'
         '<table class="dataframe">\n  <thead>\n    <tr><th>task</th><th>seconds</th></tr>\n'
         '  </thead>\n\n  <tbody>\n    <tr><td>tiny[0]</td><td>0.25</td></tr>\n  </tbody>\n'
         '</table>\n</div>')


def _png(color: str, size=(3, 2)) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=80)
    ax.fill_between([0, 1], [0, 0], [1, 1], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _md(source: str, slide_type: str | None = None):
    cell = new_markdown_cell(source)
    if slide_type:
        cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def _deck_notebook(folder: Path) -> Path:
    """The test deck.  Slides: 1 title (+notes), 2 classes and a fragment, 3 the plot, 4 table,
    error and streams, 5 attachment and local image, 6-7 remark dialect written inside one cell."""
    (folder / "img").mkdir()
    (folder / "img" / "local.png").write_bytes(_png("blue", (1, 1)))
    plot = new_code_cell("plt.plot(...)", outputs=[new_output(
        "display_data", data={"image/png": base64.b64encode(_png("red")).decode(),
                              "text/plain": "<Figure size 240x160>"})])
    plot.metadata["slideshow"] = {"slide_type": "slide"}
    table = new_code_cell("df", outputs=[new_output(
        "execute_result", data={"text/html": TABLE, "text/plain": "df"}, execution_count=2)])
    table.metadata["slideshow"] = {"slide_type": "slide"}
    error = new_code_cell("x.values[0] / 0", outputs=[new_output(
        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=ANSI_TRACEBACK)])
    streams = new_code_cell("print(...)", outputs=[
        new_output("stream", name="stdout", text="5 < 6 & ```\n"),
        new_output("stream", name="stdout", text="---\nprogress 10%\rprogress 100%\n"),
        new_output("stream", name="stderr", text="careful\n")])
    attach = _md("![a dot](attachment:dot.png) and ![local](img/local.png)", "slide")
    attach.attachments = {"dot.png": {"image/png": base64.b64encode(_png("green", (1, 1)))
                                      .decode()}}
    nb = new_notebook(cells=[
        _md("class: center, middle\n\n# Remark Test Deck\n\nfirst slide", "slide"),
        _md("Say hello to the class.", "notes"),
        _md("still on the title slide", "-"),
        _md("## Classes\n\n.center[centred] .blue[NOTE] .footnote[a footnote]\n\n"
            ".pull-left[left] .pull-right[right]\n\nclosing tag </textarea><b>bold</b>", "slide"),
        _md("SECRET-SKIPPED", "skip"),
        _md("revealed later", "fragment"),
        plot, table, error, streams, attach,
        _md("## In-cell dialect\n\nfirst step\n--\nsecond step\n???\nin-cell notes\n---\n"
            "class: inverse\n\n## Last\n\n```python\n---\n```", "slide"),
    ])
    nb.metadata["language_info"] = {"name": "python"}
    path = folder / "deck.ipynb"
    nbformat.write(nb, path)
    return path


def _markdown(page: str) -> str:
    """The deck's markdown as remark reads it: the textarea's text, entities decoded."""
    found = re.search(r'<textarea id="source">\n?(.*?)</textarea>', page, re.DOTALL)
    assert found, "no <textarea id=source> in the page"
    return html.unescape(found.group(1))


def _separators(markdown: str) -> list[str]:
    return [kind for kind, _ in split_remark(markdown)[1:]]


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deck")
    nb_path = _deck_notebook(folder)
    page, resources = RemarkExporter().from_filename(str(nb_path))
    out = folder / f"deck{resources['output_extension']}"
    out.write_text(page, encoding="utf-8")
    return {"page": page, "markdown": _markdown(page), "path": out, "nb": nb_path,
            "resources": resources}


# -- pure pieces -------------------------------------------------------------------------------
def test_split_remark_finds_separators_outside_fences():
    source = "a\n---\nb\n```\n--\n???\n```\n--\nc\n???\nnote"
    assert split_remark(source) == [("", "a"), ("slide", "b\n```\n--\n???\n```"),
                                    ("fragment", "c"), ("notes", "note")]


def test_terminal_text_and_fences():
    assert terminal_text("\x1b[1;31mred\x1b[0m\n10%\r100%\r\nab\bc") == "red\n100%\nac"
    assert remark_fence("no ticks") == "```"
    assert remark_fence("has ```` four") == "`````"
    pre = remark_pre("---\n.a[1] `x` <tag>", "stream")
    assert "&#45;--" in pre and ".a&#91;1&#93;" in pre and "&#96;x&#96;" in pre
    assert "&lt;tag&gt;" in pre and pre.startswith('<pre class="remark-output stream">')


# -- the exported deck -------------------------------------------------------------------------
def test_deck_has_remark_slide_structure(deck):
    md = deck["markdown"]
    assert md.startswith("class: center, middle\n\n# Remark Test Deck")
    # title(+notes) | classes -- fragment | plot | table... | attachment | in-cell -- ??? | last
    assert _separators(md) == ["notes", "slide", "fragment", "slide", "slide", "slide", "slide",
                               "fragment", "notes", "slide"]
    assert deck["resources"]["remark_slide_count"] == 7
    assert "<title>Remark Test Deck</title>" in deck["page"]
    # Notes come after the slide body even though the notes cell came first.
    assert md.index("still on the title slide") < md.index("???\nSay hello to the class.")
    assert "SECRET-SKIPPED" not in deck["page"]
    assert "class: inverse\n\n## Last" in md
    for dialect in (".center[centred]", ".blue[NOTE]", ".footnote[a footnote]", ".pull-left[left]"):
        assert dialect in md


def test_markdown_is_escaped_inside_the_textarea(deck):
    page = deck["page"]
    assert page.count("</textarea>") == 1, "content closed the textarea early"
    assert "<b>bold</b>" not in page.split("</textarea>")[0]
    assert "closing tag </textarea><b>bold</b>" in deck["markdown"]


def test_code_and_outputs(deck):
    md = deck["markdown"]
    assert "```python\nplt.plot(...)\n```" in md
    assert "\x1b" not in deck["page"], "ANSI codes must be stripped"
    error = re.search(r'<pre class="remark-output error">(.*?)</pre>', md, re.DOTALL).group(1)
    assert "ZeroDivisionError: division by zero" in html.unescape(error)
    assert "x.values&#91;0&#93;" in error, "remark would read .values[...] as a content class"
    stdout = re.search(r'<pre class="remark-output stream stdout">(.*?)</pre>', md, re.DOTALL)
    assert html.unescape(stdout.group(1)) == "5 < 6 & ```\n---\nprogress 100%", "streams merge"
    assert "&#45;--" in stdout.group(1), "a --- line in output must not split the slide"
    assert '<pre class="remark-output stream stderr">careful</pre>' in md
    # HTML output passes through raw, with no blank line that would end the HTML block.
    block = re.search(r'<div class="remark-output html">\n(.*?)\n</div>\n', md, re.DOTALL).group(1)
    assert '<table class="dataframe">' in block and "\n\n" not in block
    assert "tiny&#91;0&#93;" in block and ".dataframe td { color: black; }" in block


def test_images_are_embedded_as_data_uris(deck):
    md = deck["markdown"]
    assert md.count('<img src="data:image/png;base64,') == 1  # the plot output
    assert "![a dot](data:image/png;base64," in md
    assert "![local](data:image/png;base64," in md
    assert "attachment:" not in md and "img/local.png" not in md


def test_remark_js_is_inlined_not_linked(deck):
    page = deck["page"]
    js_path = find_remark_js()
    assert js_path is not None, "install remark.js: apt-get install libjs-remark-slide"
    assert deck["resources"]["remark"]["js_path"] == str(js_path)
    assert js_path.read_text(encoding="utf-8")[:2000] in page
    assert "<script src=" not in page and "remarkjs.com" not in page
    assert 'remark.create({"countIncrementalSlides": false, "highlightStyle": "github"' in page
    assert ".pull-left" in page, "remark.css is inlined"


def test_remark_js_path_traitlet_env_var_and_cdn_fallback(tmp_path, monkeypatch, caplog):
    nb = new_notebook(cells=[_md("# hi")])
    custom = tmp_path / "my-remark.js"
    custom.write_text("var remark = {create: function () {}}; /* CUSTOM-REMARK */")
    page, _ = RemarkExporter(remark_js_path=str(custom)).from_notebook_node(nb)
    assert "CUSTOM-REMARK" in page
    monkeypatch.setenv("MINIRAY_REMARK_JS", str(custom))
    assert "CUSTOM-REMARK" in RemarkExporter().from_notebook_node(nb)[0]
    monkeypatch.setenv("MINIRAY_REMARK_JS", str(tmp_path / "missing.js"))
    with pytest.raises(FileNotFoundError, match="libjs-remark-slide"):
        RemarkExporter().from_notebook_node(nb)
    monkeypatch.delenv("MINIRAY_REMARK_JS")
    exporter = RemarkExporter(remark_js_search=[str(tmp_path / "nowhere" / "*.js")])
    exporter.log.addHandler(caplog.handler)
    with caplog.at_level(logging.WARNING):
        page, _ = exporter.from_notebook_node(nb)
    exporter.log.removeHandler(caplog.handler)
    assert '<script src="https://remarkjs.com/downloads/remark-latest.min.js"></script>' in page
    assert "remark.js NOT FOUND" in caplog.text and "libjs-remark-slide" in caplog.text
    assert "remark.js could not be loaded" in page, "the page explains itself instead of going blank"


def test_the_shipped_remark_js_is_the_default(tmp_path):
    from miniray.slides.exporter import BUNDLED_REMARK_JS

    assert BUNDLED_REMARK_JS.is_file() and (BUNDLED_REMARK_JS.parent / "remark.LICENSE.txt").is_file()
    assert find_remark_js() == BUNDLED_REMARK_JS, "a plain pip install must present offline"
    page, _ = RemarkExporter().from_notebook_node(new_notebook(cells=[_md("# hi")]))
    assert "remarkjs.com" not in page and BUNDLED_REMARK_JS.read_text()[:500] in page


def test_build_says_loudly_when_remark_js_is_missing(tmp_path, monkeypatch, capsys):
    from miniray.slides import exporter

    monkeypatch.setattr(exporter, "default_search_paths", lambda: [str(tmp_path / "none.js")])
    nb_path = _tiny(tmp_path / "01_tiny.ipynb")
    assert build.main(["--output-dir", str(tmp_path / "out"), str(nb_path)]) == 0
    err = capsys.readouterr().err
    assert "remark.js NOT FOUND" in err and "libjs-remark-slide" in err and "MINIRAY_REMARK_JS" in err


def test_script_that_would_end_the_element_goes_in_as_data_uri(tmp_path):
    evil = tmp_path / "remark.js"
    evil.write_text('var remark = {create: function () {}}; var s = "</script>";')
    page, _ = RemarkExporter(remark_js_path=str(evil)).from_notebook_node(
        new_notebook(cells=[_md("# hi")]))
    assert '<script src="data:text/javascript;base64,' in page
    assert page.count("</script>") == 2


def test_jupyter_nbconvert_to_remark(deck, tmp_path):
    nb_path = tmp_path / "talk.ipynb"
    shutil.copy(deck["nb"], nb_path)
    shutil.copytree(deck["nb"].parent / "img", tmp_path / "img")
    run = subprocess.run([str(VENV_BIN / "jupyter"), "nbconvert", "--to", "remark", str(nb_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    page = (tmp_path / "talk.slides.html").read_text(encoding="utf-8")
    assert _markdown(page) == deck["markdown"]


# -- miniray slides ----------------------------------------------------------------------------
def _kernels() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline())]


def _tiny(path: Path, failing: bool = False) -> Path:
    cells = [_md("# Tiny lesson", "slide"),
             new_code_cell("import os\nprint('ran in', os.path.basename(os.getcwd()))"),
             new_code_cell("1 / 0"),
             new_code_cell("print('after the error')")]
    if not failing:
        cells[2].metadata["tags"] = ["raises-exception"]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_build_execute_runs_a_real_kernel(tmp_path, capsys):
    nb_path = _tiny(tmp_path / "lessons" / "01_tiny.ipynb")
    before = nb_path.read_bytes()
    out = tmp_path / "decks"
    assert build.main(["--execute", "--output-dir", str(out), str(nb_path)]) == 0
    assert re.fullmatch(r"built \S+01_tiny\.slides\.html \(1 slide, [\d.]+ MB, executed in "
                        r"[\d.]+ s\)\n", capsys.readouterr().out)
    md = _markdown((out / "01_tiny.slides.html").read_text(encoding="utf-8"))
    assert "ran in lessons" in md, "the kernel runs in the notebook's folder"
    assert "ZeroDivisionError" in md and "after the error" in md
    assert nb_path.read_bytes() == before, "the source notebook must not change"
    assert not _kernels(), "the kernel must be shut down"


def test_build_names_the_failing_cell(tmp_path, capsys):
    good = _tiny(tmp_path / "01_good.ipynb")
    bad = _tiny(tmp_path / "02_bad.ipynb", failing=True)
    out = tmp_path / "slides"
    assert build.main(["--execute", "--output-dir", str(out), str(bad), str(good)]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {bad}: cell 3 (`1 / 0`) raised ZeroDivisionError: division by zero" in err
    assert sorted(p.name for p in out.iterdir()) == ["01_good.slides.html"]
    assert not _kernels()


def test_build_defaults_to_the_lesson_notebooks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert build.main([]) == 2
    assert "no notebooks match notebooks/[0-9][0-9]_*.ipynb" in capsys.readouterr().err
    _tiny(tmp_path / "notebooks" / "01_tasks.ipynb")
    _tiny(tmp_path / "notebooks" / "scratch.ipynb")
    _tiny(tmp_path / "notebooks" / "exercises" / "01_tasks.ipynb")
    assert build.main([]) == 0
    assert [p.name for p in (tmp_path / "slides").iterdir()] == ["01_tasks.slides.html"]


# -- headless Chromium -------------------------------------------------------------------------
def _chromium(tmp_path: Path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1280,720", "--virtual-time-budget=4000", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        try:  # Chromium's helpers share its process group: end every one of them
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install chromium; .ci/system-packages.sh installs it)")
def test_chromium_renders_the_deck(deck, tmp_path):
    from matplotlib.image import imread

    url = deck["path"].as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    slides = re.findall(r'<div class="remark-slide-content([^"]*)">(.*?)<div class="remark-slide-'
                        r'number">', dom, re.DOTALL)
    assert slides, "remark did not render any slide"
    classes, first = slides[0]
    assert "center middle" in classes and ">Remark Test Deck</h1>" in first
    assert any('<img src="data:image/png;base64,' in body for _, body in slides)
    assert any('<table class="dataframe">' in body and "tiny[0]" in body for _, body in slides)
    assert any("inverse" in cls and ">Last</h2>" in body for cls, body in slides)
    assert '<p>Say hello to the class.</p>' in dom, "presenter notes"
    assert '<span class="blue">NOTE</span>' in dom and 'class="footnote"' in dom

    title_png, plot_png = tmp_path / "slide1.png", tmp_path / "slide3.png"
    # remark numbers every step in the URL: slide 2 has two, so slide 3 (the plot) is #4.
    _chromium(tmp_path, f"--screenshot={title_png}", url)
    _chromium(tmp_path, f"--screenshot={plot_png}", url + "#4")
    title = imread(title_png)[..., :3]
    assert title.std() > 0.05 and (title.sum(axis=2) < 1.0).sum() > 200, "slide 1 looks blank"
    plot = imread(plot_png)[..., :3]
    red = (plot[..., 0] > 0.9) & (plot[..., 1] < 0.2) & (plot[..., 2] < 0.2)
    assert red.sum() > 2000, "the PNG output did not render on slide 3"


# -- miniray slides --check --------------------------------------------------------------------
def _checked(tmp_path: Path, capsys, *cells, search=None, monkeypatch=None) -> tuple[int, str, Path]:
    nb_path = tmp_path / "01_probe.ipynb"
    nbformat.write(new_notebook(cells=[_md("# Probe", "slide"), *cells]), nb_path)
    if search is not None:
        from miniray.slides import exporter
        monkeypatch.setattr(exporter, "default_search_paths", lambda: search)
    sheets = tmp_path / "sheets"
    status = build.main(["--check", "--output-dir", str(tmp_path / "out"), "--contact-dir",
                         str(sheets), "--execute", str(nb_path)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err, sheets / "01_probe.contact.png"


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: "
                                    "apt-get install chromium; .ci/system-packages.sh installs it)")


@needs_chromium
def test_check_passes_a_deck_that_fits_and_writes_its_contact_sheet(tmp_path, capsys):
    from matplotlib.image import imread

    status, out, sheet = _checked(tmp_path, capsys, new_code_cell("print('short and sweet')"))
    assert status == 0, out
    assert re.search(r"ok +\S+01_probe\.slides\.html \(contact sheet: \S+\)", out)
    picture = imread(sheet)
    assert picture.shape[1] == 1300 and picture.shape[0] > 300 and picture[..., :3].std() > 0.05


@needs_chromium
def test_check_fails_on_overflow_hidden_output_cut_picture_and_network(tmp_path, capsys):
    tall = base64.b64encode(_png("red", (4, 12))).decode()
    status, out, sheet = _checked(
        tmp_path, capsys,
        _md("## Too long\n\n" + "\n".join(f"- line {i}" for i in range(30)), "slide"),
        _md("## Scroll box", "slide"), new_code_cell("for i in range(40): print(i)"),
        _md("## Tall picture\n\n" + "text\n\n" * 6 + f"![tall](data:image/png;base64,{tall})", "slide"),
        _md("## From the web\n\n![logo](https://example.invalid/logo.png)", "slide"))
    assert status == 1, out
    assert re.search(r"step 2 \(Too long\): overflows the slide by \d+ px: li", out), out
    assert re.search(r"step 3 \(Scroll box\): content hidden in a scroll box", out), out
    assert re.search(r"step 4 \(Tall picture\): picture cut by \d+ px", out), out
    assert "fetched from the network: https://example.invalid/logo.png" in out
    assert sheet.is_file()


@needs_chromium
def test_check_reports_a_deck_without_remark_js_and_its_notice(tmp_path, capsys, monkeypatch):
    status, out, _ = _checked(tmp_path, capsys, search=[str(tmp_path / "none.js")],
                              monkeypatch=monkeypatch)
    assert status == 1
    assert "remark.js did not load; the page shows:" in out and "could not be loaded" in out, out
    assert "fetched from the network: https://remarkjs.com/" in out


def test_check_without_decks_says_how_to_build_them(tmp_path, capsys):
    nb_path = _tiny(tmp_path / "01_tiny.ipynb")
    assert build.main(["--check", "--output-dir", str(tmp_path / "none"), str(nb_path)]) == 2
    assert "build the decks first (miniray slides --execute" in capsys.readouterr().err
