"""``miniray slides --check``: open every slide of every deck as a projector shows it, and judge it.

    deck.slides.html --(headless Chromium, 1280x800, DevTools protocol over a pipe)-->
        for each remark step: go to it, wait for its pictures, measure, screenshot
    --> problems (overflow, cut picture, hidden scroll box, network fetch, remark missing)
    --> CONTACT_DIR/NN_topic.contact.png  (every step as a thumbnail, problems framed in red)

Chromium is driven with ``--remote-debugging-pipe``: the protocol's JSON messages, each ended by a
NUL byte, go to the browser on file descriptor 3 and come back on descriptor 4, so no websocket
library and no open port are needed.  One browser serves every deck, and it is killed with its
whole process group at the end.  Every request the page makes is recorded; anything that is not a
``file:``, ``data:``, ``blob:`` or ``about:`` URL fails the deck (and a dead proxy makes sure
nothing is actually fetched).

A slide *fits* when every element of its content lies inside the slide's frame (a 1-pixel slack),
when no element hides part of its content behind a scroll bar (a projector shows no scroll bars),
and when every picture has loaded and is wholly visible.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 1280, 800
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome", "devtools:")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Runs inside the deck page for one step; returns what does not fit.  `slack` absorbs rounding.
_MEASURE = r"""
(async () => {
  const slack = 1.5;
  const slide = document.querySelector('.remark-visible .remark-slide-scaler');
  if (!slide) return {error: 'no visible slide'};
  const content = slide.querySelector('.remark-slide-content');
  await Promise.all([...content.querySelectorAll('img')].map(
      im => im.complete ? null : new Promise(r => { im.onload = im.onerror = r; })));
  const frame = slide.getBoundingClientRect();
  const name = el => {
    const text = (el.innerText || el.alt || '').trim().split('\n')[0].slice(0, 50);
    return el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
        ? '.' + el.className.trim().split(/\s+/).join('.') : '') + (text ? ' "' + text + '"' : '');
  };
  const problems = [];
  for (const el of content.querySelectorAll('*')) {
    if (el.closest('.remark-slide-number')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    const out = Math.max(frame.top - r.top, r.bottom - frame.bottom,
                         frame.left - r.left, r.right - frame.right);
    if (el.tagName === 'IMG') {
      if (!el.naturalWidth) problems.push('picture did not load: ' + name(el));
      else if (out > slack) problems.push('picture cut by ' + Math.round(out) + ' px: ' + name(el));
      continue;
    }
    if (out > slack && el.children.length === 0)
      problems.push('overflows the slide by ' + Math.round(out) + ' px: ' + name(el));
    const scrolls = /(auto|scroll|hidden)/;
    if ((scrolls.test(style.overflowY) && el.scrollHeight > el.clientHeight + 2) ||
        (scrolls.test(style.overflowX) && el.scrollWidth > el.clientWidth + 2))
      problems.push('content hidden in a scroll box (' + el.scrollHeight + 'x' + el.scrollWidth
                    + ' px shown in ' + el.clientHeight + 'x' + el.clientWidth + '): ' + name(el));
  }
  return {problems: problems, title: (content.querySelector('h1,h2,h3') || {}).innerText || ''};
})()
"""


class CheckError(Exception):
    """The check itself could not run (no Chromium, the browser died); the message says what to do."""


def find_chromium() -> str | None:
    """The Chromium to use: ``$MINIRAY_CHROMIUM``, else the first browser on PATH."""
    explicit = os.environ.get("MINIRAY_CHROMIUM")
    if explicit:
        return explicit
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class Browser:
    """One headless Chromium, spoken to over the DevTools pipe; a context manager."""

    def __init__(self, executable: str, profile: str):
        self.profile = profile
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        os.set_inheritable(to_browser_r, True)
        os.set_inheritable(from_browser_w, True)

        def fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # neither may clobber the other
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        cmd = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-quic", "--hide-scrollbars", "--mute-audio",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
               "--remote-debugging-pipe", "about:blank"]
        try:
            self.proc = subprocess.Popen(cmd, preexec_fn=fds, pass_fds=(3, 4),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except OSError as exc:
            raise CheckError(f"cannot start {executable}: {exc}") from exc
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        try:  # the renderer and GPU helpers share the browser's process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise CheckError("Chromium did not answer within the time limit")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-1500:] if self.proc.stderr else ""
                raise CheckError(f"Chromium exited (status {self.proc.poll()}): {err}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CheckError(f"{method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise CheckError(f"script failed in the page: {result['exceptionDetails'].get('text')} "
                             f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")


def check_deck(browser: Browser, deck: Path) -> tuple[list[str], list[tuple[bytes, list[str], str]]]:
    """Every problem in ``deck`` ('step N: ...') and, per remark step, (png, problems, title)."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    try:
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT,
                     "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Network.enable", {}, session)
        browser.send("Page.enable", {}, session)
        browser.send("Page.navigate", {"url": deck.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        problems: list[str] = []
        steps: list[tuple[bytes, list[str], str]] = []
        if not browser.evaluate(session, "typeof slideshow !== 'undefined'"):
            notice = browser.evaluate(session, "document.body.innerText.slice(0, 300)")
            problems.append(f"remark.js did not load; the page shows: {notice!r}")
        else:
            count = browser.evaluate(session, "slideshow.getSlideCount()")
            for n in range(1, count + 1):
                browser.evaluate(session, f"slideshow.gotoSlide({n})")
                found = browser.evaluate(session, _MEASURE)
                step_problems = found.get("problems", [found.get("error")])
                shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
                steps.append((base64.b64decode(shot), step_problems, found.get("title", "")))
                problems += [f"step {n} ({found.get('title', '')[:40]}): {p}" for p in step_problems]
        for ev in browser.events:
            if ev.get("method") == "Network.requestWillBeSent":
                url = ev["params"]["request"]["url"]
                if not url.startswith(LOCAL_SCHEMES):
                    problems.append(f"fetched from the network: {url[:120]}")
        return problems, steps
    finally:
        browser.send("Target.closeTarget", {"targetId": target})


def contact_sheet(browser: Browser, deck_name: str,
                  steps: list[tuple[bytes, list[str], str]], target: Path) -> None:
    """Write every step as a thumbnail on one PNG, problems framed in red and listed below."""
    cells = []
    for i, (png, problems, _title) in enumerate(steps, 1):
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        colour = "#c62828" if problems else "#9aa5b1"
        notes = "".join(f"<div class=p>{_html(p)}</div>" for p in problems[:3])
        cells.append(f'<div class=c style="border-color:{colour}"><img src="{uri}">'
                     f"<div class=n>step {i}</div>{notes}</div>")
    page = ("<!DOCTYPE html><meta charset=utf-8><style>body{margin:8px;font:13px sans-serif}"
            ".g{display:grid;grid-template-columns:repeat(3,1fr);gap:8px}"
            ".c{border:3px solid;padding:2px}.c img{width:100%;display:block}"
            ".n{font-weight:bold}.p{color:#c62828}</style>"
            f"<h2>{_html(deck_name)}: {len(steps)} steps at {WIDTH}x{HEIGHT}, "
            f"{sum(bool(s[1]) for s in steps)} with problems</h2><div class=g>"
            + "".join(cells) + "</div>")
    with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False, encoding="utf-8") as f:
        f.write(page)
    try:
        tab = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": tab, "flatten": True})["sessionId"]
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1300, "height": 800,
                     "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Page.enable", {}, session)
        browser.send("Page.navigate", {"url": Path(f.name).as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        height = browser.evaluate(session, "document.documentElement.scrollHeight")
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                            "clip": {"x": 0, "y": 0, "width": 1300, "height": height, "scale": 1}},
                            session)["data"]
        target.write_bytes(base64.b64decode(shot))
        browser.send("Target.closeTarget", {"targetId": tab})
    finally:
        os.unlink(f.name)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def check_decks(decks: list[Path], contact_dir: Path, chromium: str | None = None) -> dict[Path, list[str]]:
    """Check each deck and write ``contact_dir/<deck>.contact.png``; return problems by deck."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise CheckError("no Chromium found: install it (Debian: apt-get install chromium) or set "
                         "$MINIRAY_CHROMIUM to a Chromium or Chrome executable")
    contact_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="miniray-chromium-") as profile, \
            Browser(chromium, profile) as browser:
        for deck in decks:
            problems, steps = check_deck(browser, deck)
            name = deck.name.removesuffix(".slides.html").removesuffix(".html")
            contact_sheet(browser, deck.name, steps, contact_dir / f"{name}.contact.png")
            results[deck] = problems
    return results
