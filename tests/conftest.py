"""Shared helpers for the project's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# --- Tiers and scheduling --------------------------------------------------------------------
# Three markers (declared in pyproject.toml) name what `make check` leaves out: `book` (reads the
# built book), `browser` (drives Chromium) and `grading` (grades a class through nbgrader or
# `python -m autograder grade`). `book` and `browser` follow from the fixtures a test asks for;
# `grading` is set by the test files that grade a class.
NEEDS = {"book_html": "book", "browser": "browser"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark tests by the fixtures they use, keep every reader of the built book on one xdist worker
    (the book is built once per worker), and hand out the heaviest tests first: pytest-xdist deals
    its work units in collection order (groups with more tests first), so a long test dealt last
    would keep one worker busy after the other has finished."""
    for item in items:
        for fixture, marker in NEEDS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
        if item.get_closest_marker("book") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("book"))
    heavy = ("grading", "book", "browser")
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in heavy))


@pytest.fixture(autouse=True)
def _course_root(monkeypatch):
    """Tests see the repository as the course, whatever their working directory."""
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(ROOT))


def env_with_venv(**extra: str) -> dict:
    """The environment for nbgrader commands: the virtualenv first on PATH (nbgrader runs `alembic` by name)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("AUTOGRADER_COURSE_ROOT", None)
    env.update(extra)
    return env


def copy_course(destination: Path, assignments: list[str] | None = None) -> Path:
    """A scratch copy of the course, as an instructor's checkout would be; with ``assignments``, only theirs."""
    for folder in (ROOT / "solutions").iterdir():
        if assignments is None or folder.name in assignments:
            shutil.copytree(folder, destination / "solutions" / folder.name)
    shutil.copy(ROOT / "nbgrader_config.py", destination / "nbgrader_config.py")
    return destination


def autograder_grade(
    course: Path, assignment: str, env: dict, *, timeout: int = 600, workers: int = 2, students: list[str] = ()
) -> subprocess.CompletedProcess:
    """`python -m autograder grade` of the class in `course` (or of `students` only), as an instructor runs it;
    it must not end in a traceback. Two workers by default; one where a test asks only what each notebook
    scores, since each worker's start (torch, nbgrader) costs seconds of CPU that the other tests running
    beside it need."""
    chosen = [f"--student={student}" for student in students]
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", assignment, "--workers", str(workers), "--timeout", str(timeout)]
        + chosen,
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * timeout + 300,
    )
    assert "Traceback" not in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


# --- The built book, shared by tests/test_book.py and tests/test_browser.py -----------------

BUILT_BOOK: dict[str, Path] = {}  # "html": where the session's book was built (for the summary)


def toc_pages() -> list[str]:
    """The HTML path of every page listed in _toc.yml, the root first."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{f}.html" for f in files]


SPHINX_LEVELS = ("WARNING: ", "ERROR: ", "CRITICAL: ")  # the prefixes Sphinx gives its messages


def sphinx_problems(log: str) -> list[str]:
    """The lines of a book build's log that are Sphinx's warnings and errors (with -W, any one is a failure).

    Sphinx writes ``[location: ]WARNING: message`` (in colour or not). Not selected: the executing
    kernels' own log lines, which the build passes through: ``WARNING | ...``, and Python logging's
    ``ERROR:tornado.general:...`` that ipykernel 6 prints when its control channel answers as its
    sockets close at shutdown, after the notebook has run (ipython/ipykernel#1518; 6.31, the last 6.x, has it).
    A notebook that fails to execute is still caught: Sphinx reports it as a warning."""
    return [line for line in log.splitlines() if any(level in line for level in SPHINX_LEVELS)]


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """Build the book once per test session, warning-free, and return its `_build/html`.

    It is built into a fresh temporary folder, or into $BOOK_TEST_OUTPUT when that is set
    (then the screenshots of tests/test_browser.py stay there for a person to look at).
    """
    import subprocess

    vendored = ROOT / "book" / "_static" / "vendor" / "mathjax" / "tex-chtml.js"
    assert vendored.is_file(), "run `bash tools/vendor_assets.sh` (make test does) before the book tests"
    chosen = os.environ.get("BOOK_TEST_OUTPUT")
    if chosen and os.environ.get("PYTEST_XDIST_WORKER"):  # one build per xdist worker
        chosen = f"{chosen}-{os.environ['PYTEST_XDIST_WORKER']}"
    out = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("book")
    if chosen:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    kit = subprocess.run(
        [sys.executable, "-m", "autograder", "kit"],
        cwd=ROOT,
        env=env_with_venv(),
        capture_output=True,
        text=True,
        timeout=600,
    )  # the book links and publishes it
    assert kit.returncode == 0, kit.stderr or kit.stdout
    result = subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env_with_venv(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = result.stdout + result.stderr
    BUILT_BOOK["log"] = out / "build.log"
    BUILT_BOOK["log"].write_text(log)
    problems = "\n".join(sphinx_problems(log))
    assert result.returncode == 0, problems or log[-8000:]
    assert not problems, problems
    BUILT_BOOK["html"] = out / "_build" / "html"
    return BUILT_BOOK["html"]


def pytest_terminal_summary(terminalreporter):
    """Say where the book and its screenshots are, so that a person can look at them."""
    if "html" in BUILT_BOOK:
        html = BUILT_BOOK["html"]
        terminalreporter.write_line(f"book built into {html} (build log: {BUILT_BOOK['log']})")
        shots = html.parent / "screenshots"
        if shots.is_dir():
            terminalreporter.write_line(f"screenshots of its pages: {shots}")


# --- The grader as an instructor installs it: a wheel, in a virtualenv outside the course folder ----


def virtualenv(folder: Path, sees: list, pth: str) -> Path:
    """A virtualenv at ``folder``, without pip, whose .pth file ``pth`` puts the folders ``sees`` on its
    sys.path as plain path entries (the .pth files inside them, such as this environment's editable
    install of the course package, are not run). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=600)
    python = folder / "bin" / "python"
    (purelib(python) / pth).write_text("".join(f"{path}\n" for path in sees))
    return python


def purelib(python: Path) -> Path:
    """Where ``python`` installs pure-Python packages (its site-packages)."""
    query = [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    return Path(subprocess.run(query, check=True, capture_output=True, text=True).stdout.strip())


def package_source(tmp: Path) -> Path:
    """What a checkout of the course package holds, copied: building in the repository would leave a
    build/ folder there, which later builds reuse even when the sources have changed."""
    checkout = tmp / "checkout"
    shutil.copytree(ROOT / "autograder", checkout / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    return checkout


@pytest.fixture(scope="session")
def grader_from_wheel(tmp_path_factory) -> tuple[str, dict]:
    """(python, environment variables) of a fresh virtualenv under the temporary folder with the course
    package installed from its wheel. Its other packages (torch, nbgrader...) come from the test's own
    environment through a plain path entry, which does not run that environment's editable install of
    the package, and their data files (nbconvert's templates) through JUPYTER_PATH."""
    import site

    base = tmp_path_factory.mktemp("grader-venv")
    wheels = base / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(package_source(base)),
        ],
        check=True,
        capture_output=True,
        env=env_with_venv(),
    )
    python = virtualenv(base / "venv", site.getsitepackages(), "course-environment.pth")
    wheel = next(wheels.glob("*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=env_with_venv(),
    )
    return str(python), {
        "PATH": f"{python.parent}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
    }
