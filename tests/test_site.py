"""The published site as a student meets it, and what it must not hold.

The built book is served over HTTP from loopback; a student opens a chapter in Chromium,
downloads its exercise notebook and, from "How this course works", the kit. Those two files
then go into a fresh virtualenv that has never seen this repository: without the kit the
notebook's first cell says in one sentence what to install; with it, the notebook filled with
the reference answers passes every visible check, and the untouched notebook fails each check
with its one sentence. The site holds no distinctive line of any exercise's solution.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from conftest import ROOT, read_notebook
from freshvenv import FreshVenv
from test_browser import CHROMIUM_FLAGS, _chromium

from autograder import kit
from autograder.grading import graded_check
from autograder.release import filled_notebook

CHAPTER = "ch04_scaled_dot_product"
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("book")]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def site(book_html):
    """The built book at http://127.0.0.1:<port>/, as a static host would serve it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(book_html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _download(page, link, folder: Path) -> Path:
    with page.expect_download() as started:
        link.click()
    download = started.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return target


def _click_through(site: str, folder: Path) -> dict:
    """What a student gets by clicking: the chapter's notebook, then the kit, and every other host asked."""
    from playwright.sync_api import sync_playwright

    elsewhere = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(accept_downloads=True)
            context.route(
                lambda url: urlsplit(url).hostname != "127.0.0.1",
                lambda route: (elsewhere.append(route.request.url), route.abort()),
            )
            page = context.new_page()
            page.goto(f"{site}book/{CHAPTER}.html", wait_until="load")
            notebook = _download(page, page.locator("article a.download", has_text=f"{CHAPTER}.ipynb").first, folder)
            page.locator("nav a", has_text="How this course works").first.click()
            page.wait_for_load_state("load")
            wheel = _download(page, page.locator("article a.download", has_text=kit.wheel_name()).first, folder)
        finally:
            browser.close()
    return {"notebook": notebook, "wheel": wheel, "elsewhere": elsewhere}


@pytest.fixture(scope="module")
def downloads(site, tmp_path_factory) -> dict:
    """In a thread of its own: the browser tests' Playwright may hold this thread's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_click_through, site, tmp_path_factory.mktemp("downloads")).result()


def test_a_student_downloads_the_notebook_and_the_kit_over_http(downloads):
    assert downloads["notebook"].name == f"{CHAPTER}.ipynb"
    assert downloads["notebook"].read_bytes() == (ROOT / "exercises" / CHAPTER / f"{CHAPTER}.ipynb").read_bytes()
    assert downloads["wheel"].name == kit.wheel_name()
    assert "autograder/checks.py" in kit.wheel_files(downloads["wheel"])
    assert not downloads["elsewhere"], f"the site asked other hosts: {downloads['elsewhere']}"


def test_the_kit_is_also_at_a_stable_address_for_pip(book_html):
    """Colab's `%pip install <site>/<wheel>` needs the wheel at the site's root."""
    assert (book_html / kit.wheel_name()).is_file()
    assert (book_html / ".nojekyll").is_file(), "GitHub Pages would hide _static/ and _downloads/"


def test_the_default_build_shows_no_launch_button(book_html):
    """Launch buttons are a deployment's choice (tests/test_kit.py builds a page with them)."""
    pages = [p.read_text(errors="ignore") for p in book_html.rglob("*.html")]
    launchers = ("colab.research.google.com", "mybinder.org", "/hub/user-redirect", "launch-buttons")
    assert pages and not [(url, i) for url in launchers for i, page in enumerate(pages) if url in page]


def test_the_site_holds_every_exercise_notebook(book_html):
    published = {p.name for p in (book_html / "_downloads").rglob("*.ipynb")}
    assert published == {f"{a}.ipynb" for a in sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())}


def test_the_site_holds_no_reference_solution(book_html):
    found, measure = kit.leaks(kit.folder_files(book_html))
    assert measure and sum(total for _, total in measure.values()) > 0
    assert not found, "the site hands out solutions:\n" + "\n".join(
        f"{leak.file}: {leak.exercise} ({leak.assignment}): {leak.statement}" for leak in found
    )


# --- The two files in a virtualenv that has never seen the repository --------------------------


def _errors(cell) -> list:
    return [out for out in cell.get("outputs", []) if out.output_type == "error"]


def _text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


def _check_cells(notebook) -> list:
    """The visible check cells (the hidden ones are empty in a student's notebook)."""
    return [c for c in notebook.cells if c.cell_type == "code" and (graded_check(c) or (None, None))[1] == "visible"]


@pytest.fixture(scope="module")
def kitted(downloads, tmp_path_factory) -> FreshVenv:
    """A fresh virtualenv into which the downloaded kit was installed with plain pip."""
    fresh = FreshVenv(tmp_path_factory.mktemp("kitted"))
    installed = fresh.run("-m", "pip", "install", "--quiet", str(downloads["wheel"]))
    assert installed.returncode == 0, installed.stderr
    return fresh


def test_without_the_kit_the_first_cell_says_what_to_install(downloads, tmp_path):
    bare = FreshVenv(tmp_path)
    ran = bare.execute(read_notebook(downloads["notebook"]), "without_kit")
    first = next(c for c in ran.cells if c.cell_type == "code")
    [error] = _errors(first)
    assert error.ename == "KitMissing"
    [sentence] = error.traceback  # shown instead of a traceback
    assert "autograder is not installed" in sentence and "How this course works" in sentence
    assert "Traceback" not in sentence and sentence.count(". ") == 0


def test_the_kit_installs_and_the_reference_answers_pass_every_visible_check(kitted, downloads):
    fresh = kitted
    where = fresh.run(
        "-c",
        "import autograder, importlib.util, sys; "
        "print(autograder.__file__); print(importlib.util.find_spec('autograder.reference'))",
    )
    module_file, reference = where.stdout.split()
    assert Path(module_file).is_relative_to(fresh.folder / "venv"), module_file
    assert reference == "None", "the kit must not carry autograder.reference"

    student = read_notebook(downloads["notebook"])
    names = {
        c.metadata["nbgrader"]["grade_id"] for c in student.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    filled = filled_notebook(student, read_notebook(ROOT / "solutions" / CHAPTER / f"{CHAPTER}.ipynb"), names)
    probe = nbformat.v4.new_code_cell(
        "import autograder, importlib.util\n"
        "print(autograder.__file__, importlib.util.find_spec('autograder.reference'))"
    )
    filled.cells.insert(0, probe)
    ran = fresh.execute(filled, "filled")
    seconds = time.perf_counter() - fresh.created
    print(f"from a fresh virtualenv to {len(names)} passing checks, the kit installed: {seconds:.1f} s")
    assert _text(ran.cells[0]).split() == [module_file, "None"], "the kernel ran outside the fresh virtualenv"
    problems = [(c.metadata.get("nbgrader", {}).get("grade_id"), _errors(c)[0].evalue) for c in ran.cells if _errors(c)]
    assert not problems, problems
    checks = _check_cells(ran)
    assert checks and all("visible checks passed" in _text(c) for c in checks), [_text(c) for c in checks]


def test_the_untouched_notebook_fails_each_check_with_one_sentence(kitted, downloads):
    ran = kitted.execute(read_notebook(downloads["notebook"]), "untouched")
    checks = _check_cells(ran)
    assert checks
    for cell in checks:
        [error] = _errors(cell)
        assert error.ename == "CheckFailure", (cell.metadata["nbgrader"]["grade_id"], error.ename, error.evalue)
        assert error.evalue and len(error.traceback) == 1 and "Traceback" not in error.traceback[0]
