"""The built book in a real browser: headless Chromium opens every page of _toc.yml.

Each page is opened from the file system (file://), the way a student reads the book
offline, and must: log no console error; show every image (natural width > 0); leave no
raw TeX behind (MathJax typeset every formula); link only to files that exist in
`_build/html`, downloads included; and ask no other host for anything. A screenshot of
every page is written to `_build/screenshots/` beside the build's `html/` folder. Every page
is then narrowed to a phone's width (PHONE), where it must not be wider than the screen: a
reader should never have to scroll sideways.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` pip package
(requirements.txt), which drives that Chromium and never downloads a browser. Without them
these tests fail, they do not skip. CHROMIUM=/path/to/chromium chooses another binary.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import toc_pages

pytestmark = pytest.mark.browser
PAGES = toc_pages()
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
SETTLE_MS = 400  # a page is loaded when no request has been in flight for this long
PAGE_TIMEOUT_MS = 30_000
PHONE = {"width": 390, "height": 844}  # CSS pixels of a common phone held upright

# Run in the page once it has loaded: wait for MathJax and the images, then report what the
# tests check. Text inside code, scripts and MathJax's own output is not searched for TeX.
INSPECT_PAGE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null
      : new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  const skip = "script, style, pre, code, textarea, mjx-container";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawTex = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement && node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    if (/\\$\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/.test(text)) rawTex.push(text.trim().slice(0, 120));
  }
  const untypeset = Array.from(document.querySelectorAll(".math"))
      .filter(el => !el.querySelector("mjx-container")).map(el => el.textContent.trim().slice(0, 120));
  const inArticle = a => a.closest("article") !== null;
  return {
    images: images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth, alt: img.alt})),
    rawTex: rawTex.concat(untypeset),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => ({
      href: a.href, raw: a.getAttribute("href"), article: inArticle(a),
      searchResult: a.closest("#search-results") !== null,
      download: a.classList.contains("download") || a.hasAttribute("download"),
      text: a.textContent.trim().slice(0, 80)})),
  };
}"""


# How much wider than its window a page is, and the innermost elements that stick out of the
# window without a scrolling box of their own around them (a wide table that scrolls inside its
# container is fine).
MEASURE_WIDTH = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible" && p.getBoundingClientRect().right <= width + 1) return true; }
    return false; };
  const wide = Array.from(document.body.querySelectorAll("*"))
      .filter(el => el.getBoundingClientRect().right > width + 1 && !scrolls(el))
      .filter((el, _, all) => !all.some(other => other !== el && el.contains(other)));
  return {window: width, page: document.documentElement.scrollWidth,
          wide: wide.slice(0, 5).map(el => `<${el.tagName.toLowerCase()}> ${el.textContent.trim().slice(0, 60)}`)};
}"""


@dataclass
class Visit:
    """What one page did in the browser."""

    errors: list[str] = field(default_factory=list)  # console errors, page errors, failed loads
    other_hosts: list[str] = field(default_factory=list)  # requests to anything but the book's files
    report: dict = field(default_factory=dict)  # what INSPECT_PAGE returned
    screenshot: Path | None = None
    on_a_phone: dict = field(default_factory=dict)  # what MEASURE_WIDTH returned at the phone's width


def _chromium() -> str:
    chosen = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chosen or not Path(chosen).exists():
        pytest.fail(
            "Chromium was not found: the browser tests need Debian's Chromium (`apt-get install -y "
            "chromium`), or CHROMIUM=/path/to/chromium.",
            pytrace=False,
        )
    return chosen


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need the `playwright` pip package (requirements.txt); "
            "it drives the system's Chromium, no browser download needed.",
            pytrace=False,
        )
    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _visit(browser, url: str, screenshot: Path, ready: str | None = None) -> Visit:
    """Open one page in a fresh context, record everything it does, screenshot it, then narrow the window to
    the phone's width and measure the page there (the layout follows the width, as when a phone turns).

    `ready`: a CSS selector to wait for before the page is inspected (content drawn by script).
    """
    visit = Visit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    in_flight: set = set()

    def on_request(request):
        try:
            mine = request.frame.page == page
        except Exception:  # a worker's request has no frame; it was started by this page
            mine = True
        if not mine:
            return
        in_flight.add(request)
        if urlsplit(request.url).scheme not in LOCAL_SCHEMES:
            visit.other_hosts.append(request.url)

    def on_done(request):
        in_flight.discard(request)

    def on_failed(request):
        in_flight.discard(request)
        if urlsplit(request.url).scheme in LOCAL_SCHEMES:
            visit.errors.append(f"failed to load {request.url}: {request.failure}")

    # Nothing may leave the machine, even if a page asked: such requests are recorded, then refused.
    context.route(lambda url: urlsplit(url).scheme not in LOCAL_SCHEMES, lambda route: route.abort())
    page.on("request", on_request)
    page.on("requestfinished", on_done)
    page.on("requestfailed", on_failed)
    page.on(
        "console",
        lambda message: (
            visit.errors.append(f"console {message.type}: {message.text}") if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: visit.errors.append(f"uncaught error: {error}"))

    def settle():
        quiet_for = 0
        for _ in range(PAGE_TIMEOUT_MS // 100):
            quiet_for = 0 if in_flight else quiet_for + 100
            if quiet_for > SETTLE_MS:
                return
            page.wait_for_timeout(100)

    try:
        page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        if ready:
            page.wait_for_selector(ready, timeout=PAGE_TIMEOUT_MS)
        settle()
        visit.report = page.evaluate(INSPECT_PAGE)
        settle()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        visit.screenshot = screenshot
        page.set_viewport_size(PHONE)
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        visit.on_a_phone = page.evaluate(MEASURE_WIDTH)
    finally:
        context.close()
    return visit


@pytest.fixture(scope="module")
def visits(browser, book_html) -> dict[str, Visit]:
    """Every page of _toc.yml, opened once."""
    shots = book_html.parent / "screenshots"
    return {
        page: _visit(browser, (book_html / page).as_uri(), shots / page.replace("/", "__").replace(".html", ".png"))
        for page in PAGES
    }


def _too_wide(measured: dict) -> str | None:
    """None if the page fits its window, else one sentence that says what sticks out."""
    if measured["page"] <= measured["window"]:
        return None
    return (
        f"the page is {measured['page']} pixels wide on a {measured['window']}-pixel screen, so the reader "
        f"must scroll sideways; sticking out: {measured['wide']}"
    )


def _local_target(href: str) -> tuple[Path, str]:
    """The file a file:// link points to, and its fragment."""
    parts = urlsplit(href)
    return Path(unquote(parts.path)), unquote(parts.fragment)


@pytest.mark.parametrize("page", PAGES)
def test_page_logs_no_console_error(visits, page):
    assert not visits[page].errors, f"{page}:\n" + "\n".join(visits[page].errors)


@pytest.mark.parametrize("page", PAGES)
def test_page_asks_no_other_host(visits, page):
    assert not visits[page].other_hosts, f"{page} requested: {visits[page].other_hosts}"


@pytest.mark.parametrize("page", PAGES)
def test_every_image_loaded(visits, page):
    broken = [image["src"] for image in visits[page].report["images"] if image["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.parametrize("page", PAGES)
def test_every_formula_was_typeset(visits, page):
    assert not visits[page].report["rawTex"], f"{page}: raw TeX left in the page: {visits[page].report['rawTex']}"


@pytest.mark.parametrize("page", PAGES)
def test_every_internal_link_resolves(visits, book_html, page):
    root = book_html.resolve()
    problems = []
    for link in visits[page].report["links"]:
        if urlsplit(link["href"]).scheme != "file":
            continue  # a link to another site is only followed if the reader clicks it
        target, fragment = _local_target(link["href"])
        if target.is_dir():
            target = target / "index.html"
        if root not in target.resolve().parents:
            problems.append(f"{link['raw']!r} leaves the built site")
        elif not target.is_file():
            problems.append(f"{link['raw']!r} ({link['text']!r}) points to a missing file")
        elif (
            link["article"]
            and fragment
            and target.suffix == ".html"
            and f'id="{fragment}"' not in target.read_text(errors="replace")
        ):
            problems.append(f"{link['raw']!r} ({link['text']!r}): no #{fragment} in {target.name}")
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", [p for p in PAGES if re.fullmatch(r"book/ch\d\d_\w+\.html", p)])
def test_chapter_downloads_its_student_notebook(visits, book_html, page):
    assignment = page[len("book/") : -len(".html")]
    downloads = [link for link in visits[page].report["links"] if link["download"]]
    notebooks = [link for link in downloads if link["href"].endswith(f"/{assignment}.ipynb")]
    assert notebooks, f"{page} has no download link for {assignment}.ipynb (found {[d['raw'] for d in downloads]})"
    for link in notebooks:
        target, _ = _local_target(link["href"])
        assert target.is_file() and target.stat().st_size > 0, link["raw"]


@pytest.mark.parametrize("page", PAGES)
def test_page_fits_a_phone_screen(visits, page):
    problem = _too_wide(visits[page].on_a_phone)
    assert problem is None, f"{page}: {problem}"


@pytest.mark.parametrize(
    "wide, fits",
    [
        (
            '<p>open <code style="white-space: nowrap">exercises/ch04_scaled_dot_product/'
            "ch04_scaled_dot_product.ipynb</code> now</p>",
            False,
        ),
        (
            "<p>open <code>exercises/ch04_scaled_dot_product/ch04_scaled_dot_product.ipynb</code> now</p>"
            '<div style="overflow-x: auto"><table><tr><td style="white-space: nowrap">'
            + "wide " * 80
            + "</td></tr></table></div>",
            True,
        ),
    ],
)
def test_the_phone_check_tells_a_wide_page_from_one_that_fits(browser, tmp_path, wide, fits):
    """A span that cannot wrap is caught; text that wraps, and a table in its own scrolling box, are not."""
    page = tmp_path / "page.html"
    page.write_text(
        '<!doctype html><meta name="viewport" content="width=device-width">'
        "<style>code { overflow-wrap: break-word; }</style><body>" + wide + "</body>"
    )
    problem = _too_wide(_visit(browser, page.as_uri(), tmp_path / "page.png").on_a_phone)
    assert (problem is None) == fits, problem
    if not fits:
        assert "pixels wide on a 390-pixel screen" in problem and "<code> exercises/ch04" in problem, problem


@pytest.mark.parametrize("page", PAGES)
def test_screenshot_was_written(visits, page):
    shot = visits[page].screenshot
    assert shot is not None and shot.is_file() and shot.stat().st_size > 10_000, shot


def test_search_works_offline(browser, book_html):
    """The search page finds a chapter from file://, with no console error and no network."""
    url = (book_html / "search.html").as_uri() + "?q=softmax"
    visit = _visit(browser, url, book_html.parent / "screenshots" / "search.png", ready="#search-results li a")
    assert not visit.errors, "\n".join(visit.errors)
    assert not visit.other_hosts, visit.other_hosts
    results = [link["href"] for link in visit.report["links"] if link["searchResult"]]
    assert any("book/ch04_scaled_dot_product.html" in href for href in results), (
        f"searching for 'softmax' did not list chapter 4: {results}"
    )
