"""The book builds warning-free, offline, and every chapter page follows the template.

The template is AUTHORING.md, "The chapter page": an overview box (objectives,
prerequisites, time), glossary links, a summary, three to five self-check questions with
hidden answers, and an exercise table whose points match the nbgrader notebook, with a link
that downloads the student notebook. The browser tests (tests/test_browser.py) check the
same build as a reader sees it.
"""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, grade_id, read_notebook, sphinx_problems, toc_pages

PAGES = toc_pages()
CHAPTERS = [page[: -len(".html")] for page in PAGES if re.fullmatch(r"book/ch\d\d_\w+\.html", page)]


def _section(source: str, title: str) -> str:
    """The text of the `## title` section of a page (up to the next `## ` heading)."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", source, re.M | re.S)
    assert match, f"the page has no `## {title}` section"
    return match.group(1)


def _exercise_points(assignment: str) -> dict[str, int]:
    """Exercise name -> total points of its graded test cells, from the nbgrader source notebook."""
    notebook = read_notebook(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    names = [grade_id(c) for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]
    points = {}
    for name in names:
        tests = [c for c in notebook.cells if re.fullmatch(rf"test_{re.escape(name)}(_\w+)?", grade_id(c) or "")]
        points[name] = sum(c.metadata["nbgrader"].get("points", 0) for c in tests)
    return points


# A build log's lines as they come: Sphinx's messages (plain, and coloured as on a terminal), then what
# the executing kernels print through the build: their own log lines and ipykernel 6's shutdown race.
BUILD_LOG = """\
reading sources... [ 40%] book/ch04_scaled_dot_product
/course/book/ch04_scaled_dot_product.md:12: WARNING: undefined label: 'fig-missing' [ref.ref]
\x1b[91m/course/book/ch05_attention_types.md:3: WARNING: Executing notebook failed: CellExecutionError [mystnb.exec]\x1b[39;49;00m
\x1b[91mERROR: Unknown directive type "exercise".\x1b[39;49;00m
CRITICAL: the toc names a file that does not exist
[I 2026-12-04 02:55:00] WARNING | Kernel does not have a connection file
ERROR:tornado.general:Uncaught exception in ZMQStream callback
zmq.error.ZMQError: Socket operation on non-socket
build succeeded.
"""


def test_the_build_fails_on_sphinx_messages_and_not_on_kernel_log_lines():
    found = sphinx_problems(BUILD_LOG)
    messages = ("undefined label", "Executing notebook failed", "Unknown directive", "the toc names a file")
    assert len(found) == len(messages) and all(m in line for m, line in zip(messages, found)), found
    assert sphinx_problems("build succeeded.\n[I] WARNING | no connection file\nERROR:tornado.general:x\n") == []


@pytest.mark.parametrize("page", PAGES)
def test_page_is_built(book_html, page):
    assert (book_html / page).is_file()


def test_ch04_figures_were_generated_at_build_time_with_alt_text(book_html):
    text = (book_html / "book/ch04_scaled_dot_product.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]+\.png)"[^>]*>', text)
    assert len(images) >= 3
    for src in images:
        assert (book_html / "book" / src).resolve().is_file(), src


@pytest.mark.parametrize("page", PAGES)
def test_every_image_has_alt_text(book_html, page):
    text = (book_html / page).read_text()
    for tag in re.findall(r"<img[^>]*>", text):
        assert re.search(r'alt="[^"]+"', tag), f"an image without alt text on {page}: {tag[:200]}"


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_nothing_from_other_hosts(book_html, page):
    text = (book_html / page).read_text()
    loaded = re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="(https?:)?//[^"]*"', text)
    assert not loaded, f"{page} loads from the network: {loaded}"


def test_math_is_typeset_by_the_vendored_mathjax(book_html):
    assert "_static/vendor/mathjax/tex-chtml.js" in (book_html / "book/ch04_scaled_dot_product.html").read_text()
    assert (book_html / "_static/vendor/mathjax/tex-chtml.js").is_file()


def test_misconceptions_are_corrected_on_the_page(book_html):
    assert (book_html / "book/ch04_scaled_dot_product.html").read_text().count("Common misconception") >= 4
    assert "Common misconception" in (book_html / "book/ch00_warmup.html").read_text()


def test_the_explorer_shows_its_default_state_as_a_figure_in_the_static_book(book_html):
    text = (book_html / "book/ch04_scaled_dot_product.html").read_text()
    figure = re.search(r'<figure class="[^"]*\bexplorer\b[^"]*"[^>]*>(.*?)</figure>', text, re.S)
    assert figure, "the attention explorer's figure (class explorer) is missing"
    assert re.search(r'<img alt="[^"]+" src="[^"]+\.png"', figure.group(1))
    assert "live in Jupyter" in figure.group(1)
    assert "widget-view+json" not in text  # no dead widget controls in the static page


def test_the_glossary_gives_every_term_a_chinese_term(book_html):
    source = (ROOT / "book" / "glossary.md").read_text()
    blocks = re.findall(r"```\{glossary\}\n(.*?)```", source, re.S)
    assert blocks, "book/glossary.md has no glossary block"
    for block in blocks:
        entries = re.split(r"\n(?=[^\s:])", block.strip())
        for entry in entries:
            if entry.startswith(":"):
                continue  # an option such as :sorted:
            term = entry.split("\n", 1)[0]
            definition = re.search(r"^[ \t]+(.*)$", entry, re.M)
            assert definition and re.match(r"\*Chinese:\* [^.]*[\u3400-\u9fff]", definition.group(1)), (
                f"glossary term {term!r}: its definition must start with *Chinese:* and the Chinese term"
            )
    html = (book_html / "book/glossary.html").read_text()
    assert html.count('<dt id="term-') >= 20


def _glossary_sections_out_of_order(source: str) -> str | None:
    """None if the `## Chapters N...` sections of a glossary follow the chapters, else what is wrong."""
    firsts = [int(n) for n in re.findall(r"^## Chapters (\d+)", source, re.M)]
    if firsts != sorted(firsts):
        return f"the glossary's sections start at chapters {firsts}; put them in chapter order"
    return None


def test_the_glossary_sections_follow_the_chapters():
    assert _glossary_sections_out_of_order((ROOT / "book" / "glossary.md").read_text()) is None


@pytest.mark.parametrize(
    "headings, in_order",
    [
        (["Reading the articles' terms", "Chapters 0 and 4", "Chapters 1-3", "Chapters 5-7", "Chapters 8-10"], True),
        (["Chapters 0 and 4", "Chapters 5-7", "Chapters 13-14", "Chapters 8-10"], False),
    ],
)
def test_the_glossary_order_check_tells_order_from_disorder(headings, in_order):
    source = "# Glossary\n\n" + "".join(f"## {h}\n\ntext\n\n" for h in headings)
    assert (_glossary_sections_out_of_order(source) is None) == in_order


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_opens_with_objectives_prerequisites_and_time(chapter):
    source = (ROOT / f"{chapter}.md").read_text()
    body = source.split("\n# ", 1)[1]
    overview = re.match(r"[^\n]+\n+```\{admonition\} In this chapter\n:class: chapter-overview\n(.*?)\n```", body, re.S)
    assert overview, "the title must be followed by the `In this chapter` admonition (class chapter-overview)"
    for part in ("**Learning objectives.**", "**Prerequisites.**", "**Estimated time.**"):
        assert part in overview.group(1), f"the overview box has no {part}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_links_terms_to_the_glossary(chapter):
    assert "{term}`" in (ROOT / f"{chapter}.md").read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_closes_with_summary_self_check_and_exercises(chapter):
    source = (ROOT / f"{chapter}.md").read_text()
    headings = re.findall(r"^## (.+)$", source, re.M)
    assert headings[-3:] == ["Summary", "Check yourself", "Exercises"], headings
    questions = re.findall(r"^\d+\. ", _section(source, "Check yourself"), re.M)
    answers = re.findall(r"^ +```\{dropdown\} Answer$", _section(source, "Check yourself"), re.M)
    assert 3 <= len(questions) <= 5, f"{len(questions)} self-check questions (three to five)"
    assert len(answers) == len(questions), "every question needs its answer in a dropdown"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_exercise_table_matches_the_notebook(chapter):
    assignment = chapter.split("/")[-1]
    exercises = _section((ROOT / f"{chapter}.md").read_text(), "Exercises")
    link = f"<../exercises/{assignment}/{assignment}.ipynb>`"
    assert "{download}`" in exercises and link in exercises, f"no {{download}} link to {link[1:-2]}"
    rows = re.findall(r"^\| `(\w+)[^`]*` \|.*\| (\d+) \| (\d+) \| (\d+) \|$", exercises, re.M)
    listed = {name: (int(difficulty), int(minutes), int(points)) for name, difficulty, minutes, points in rows}
    expected = _exercise_points(assignment)
    assert list(listed) == list(expected), f"the table lists {list(listed)}; the notebook has {list(expected)}"
    for name, (difficulty, minutes, points) in listed.items():
        assert 1 <= difficulty <= 5, f"{name}: difficulty {difficulty} is not 1-5"
        assert minutes > 0, f"{name}: give the estimated minutes"
        assert points == expected[name], f"{name}: the table says {points} points, the notebook gives {expected[name]}"


@pytest.fixture
def explore(monkeypatch):
    """book/explorers.py's explore(), outside a kernel (widgets work without a frontend)."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.syspath_prepend(str(ROOT / "book"))
    from explorers import explore

    return explore


def _draw_line(calls):
    import matplotlib.pyplot as plt

    def draw(n=2, label="a"):
        calls.append((n, label))
        plt.figure()
        plt.plot(range(n))

    return draw


def test_an_explorer_carries_a_widget_and_a_png_of_its_starting_state(explore):
    import base64

    import matplotlib.pyplot as plt

    calls = []
    bundle = explore(_draw_line(calls), n=(1, 5, 1), label=["a", "b"])._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert calls == [(2, "a")], "the starting state comes from draw's defaults, drawn once"
    assert plt.get_fignums() == [], "the explorer closes the figures it draws"


def test_an_explorer_redraws_when_a_control_moves(explore):
    calls = []
    explorer = explore(_draw_line(calls), n=(1, 5, 1), label=["a", "b"])
    slider, dropdown = explorer.widget.children[:2]
    slider.value = 4
    dropdown.value = "b"
    assert calls == [(2, "a"), (4, "a"), (4, "b")]


def test_an_explorer_says_what_is_wrong(explore):
    import matplotlib.pyplot as plt

    with pytest.raises(TypeError, match="needs a drawing function"):
        explore(3, n=(1, 5, 1))
    with pytest.raises(TypeError, match="needs at least one control"):
        explore(_draw_line([]))
    with pytest.raises(RuntimeError, match="must draw exactly one new figure; it drew 2"):
        explore(lambda n=1: (plt.figure(), plt.figure()), n=(1, 5, 1))
    assert plt.get_fignums() == []
