"""``python -m autograder progress``: which exercises of a student's notebooks pass their visible checks.

Exercises are found from nbgrader's cell metadata, as the course contract fixes it: a
solution cell's grade_id is the exercise's name, and its graded test cells are
``test_<name>`` and ``test_<name>_hidden`` (``autograder.conventions``). A graded test cell that holds no code in a student
notebook is one whose checks nbgrader removed: they run only when the notebook is graded.

Each notebook runs, as a copy held in memory, in a fresh kernel of the Python that runs
this command (so the answer does not depend on which kernel Jupyter would pick), in the
notebook's folder, with a time limit per cell and one per notebook; notebooks run side by
side, one kernel each. The notebook file is never written. An exercise is done when each of
its visible test cells ends without an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import enum
import json
import logging
import os
import re
import shutil
import site
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from . import conventions, protocol

KERNEL_NAME = "autograder-progress"
QUIET = logging.getLogger("autograder.progress")  # nbclient logs each timeout; the table says it better
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
ANSI = re.compile(r"\x1b\[[0-9;]*m")
IPYTHON_FILE = re.compile(r"\(\d+\.py, line (\d+)\)")  # where IPython says a syntax error is


class ProgressError(Exception):
    """A path the command cannot use; the message is one sentence for the student."""


class NoExercises(ProgressError):
    """A notebook with no nbgrader exercise cells: a scratch notebook, when found in a folder."""


class Status(enum.Enum):
    DONE = "done"
    NOT_STARTED = "not started"
    FAILS = "fails"
    ERROR = "error"
    TIMED_OUT = "timed out"
    NOT_RUN = "not run"
    UNCHECKED = "no visible check"


@dataclass(frozen=True)
class Limits:
    """Seconds a cell may run, seconds a notebook may run, and seconds an interrupted cell gets to stop."""

    cell: float = 300.0
    notebook: float = 900.0
    grace: float = 10.0


@dataclass
class ExerciseCells:
    """Where one exercise lives in a notebook, and what it is worth."""

    name: str
    solution: int | None
    visible_tests: list[int] = field(default_factory=list)
    points: float = 0.0
    hidden_points: float = 0.0
    test_points: dict[int, float] = field(default_factory=dict)  # visible test cell -> its points


@dataclass
class Chapter:
    path: Path
    notebook: NotebookNode
    exercises: list[ExerciseCells]

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class CellRun:
    """How one code cell ended, and why: ``passed``, ``error``, ``timed out`` (interrupted),
    ``stuck`` (did not stop when interrupted), ``died`` (the kernel stopped) or ``not run``."""

    outcome: str
    message: str = ""


@dataclass
class ExerciseProgress:
    """``earned``: the points of the visible test cells that pass; ``points - hidden_points`` is what they
    can earn; ``hidden_points`` are decided only when the notebook is graded."""

    chapter: str
    name: str
    status: Status
    points: float
    hidden_points: float
    reason: str = ""
    earned: float = 0.0

    @property
    def visible_points(self) -> float:
        return self.points - self.hidden_points


# ----------------------------------------------------------------------------- finding exercises


def _has_code(source: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in source.splitlines())


def exercises_of(notebook: NotebookNode) -> list[ExerciseCells]:
    """The exercises of a notebook, in order, from its nbgrader metadata.

    A graded test cell whose grade_id names none of the notebook's exercises counts as an exercise of its own.
    """
    found: dict[str, ExerciseCells] = {}
    for index, cell in enumerate(notebook.cells):
        name = conventions.solution_of(cell)
        if name:
            found.setdefault(name, ExerciseCells(name, index))
    names = list(found)
    for index, cell in enumerate(notebook.cells):
        if not conventions.is_test(cell):
            continue
        grade_id = conventions.grade_id(cell) or f"cell {index + 1}"
        owner = (conventions.parse_test_id(grade_id, names) or (grade_id,))[0]
        exercise = found.setdefault(owner, ExerciseCells(owner, None))
        points = float(conventions.metadata(cell).get("points", 0))
        exercise.points += points
        if _has_code(cell.source):
            exercise.visible_tests.append(index)
            exercise.test_points[index] = points
        else:
            exercise.hidden_points += points
    return list(found.values())


def read_chapter(path: Path) -> Chapter:
    """A student notebook and its exercises; ProgressError when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProgressError(f"{path} is not a notebook: it is not a text file.") from None
    except OSError as error:
        raise ProgressError(f"{path} cannot be read ({error.strerror}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProgressError(
            f"{path} is not a notebook: it is not valid JSON ({error.msg} at line {error.lineno})."
        ) from None
    if (
        not isinstance(data, dict)
        or "nbformat" not in data
        or not isinstance(data.get("cells", data.get("worksheets")), list)
    ):
        raise ProgressError(f"{path} is JSON but not a Jupyter notebook (it has no list of cells).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
    except Exception as error:  # nbformat's errors for malformed notebooks vary by version
        raise ProgressError(f"{path} is not a notebook Jupyter can read ({type(error).__name__}: {error}).") from None
    exercises = exercises_of(notebook)
    if not exercises:
        raise NoExercises(
            f"{path} has no nbgrader exercise cells: is it one of the course's notebooks from exercises/?"
        )
    return Chapter(path, notebook, exercises)


def _notebooks_in(folder: Path) -> list[Path]:
    """Notebooks in the folder itself and in its subfolders (an assignment folder, or a folder of them)."""
    found = sorted(folder.glob("*.ipynb")) + sorted(folder.glob("*/*.ipynb"))
    return [p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def find_chapters(path: Path) -> tuple[list[Chapter], list[str]]:
    """The exercise notebooks at path, and a sentence for each notebook in a folder that could not be read.

    A notebook in a folder without nbgrader cells (a student's scratch notebook) is left out.
    """
    if not path.exists():
        raise ProgressError(f"There is no file or folder {path}.")
    if path.is_file():
        return [read_chapter(path)], []
    candidates = _notebooks_in(path)
    if not candidates:
        raise ProgressError(f"There are no notebooks in {path} (looked for {path}/*.ipynb and {path}/*/*.ipynb).")
    chapters, problems = [], []
    for candidate in candidates:
        try:
            chapters.append(read_chapter(candidate))
        except NoExercises:
            continue
        except ProgressError as error:
            problems.append(str(error))
    if not chapters and not problems:
        raise ProgressError(
            f"None of the {len(candidates)} notebooks in {path} has nbgrader exercise cells: "
            "give the folder of the course's exercise notebooks (exercises/)."
        )
    return chapters, problems


# ----------------------------------------------------------------------------- running notebooks


def _kernel_env(jobs: int) -> dict:
    env = dict(os.environ)
    env.pop(protocol.ENV, None)  # puts the checks in grading mode, where they do not judge
    package_parent = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_parent not in installed:  # importable from a checkout: keep it importable from the notebook's folder
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def _describe(cell: NotebookNode) -> str:
    """A cell as a student can find it in Jupyter, which shows no cell numbers."""
    grade_id = conventions.grade_id(cell)
    if grade_id and conventions.is_solution(cell):
        return f"the cell that defines `{grade_id}`"
    if grade_id:
        return f"the cell `{grade_id}`"
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"the cell starting `{textwrap.shorten(first, 40, placeholder='...')}`"


def _cell_run(cell: NotebookNode) -> CellRun:
    """How a cell that ran ended: ``error``, with the error's sentence, or ``passed``.

    Only errors count: at grading, a test cell's outputs are replaced by the grader's verdict.
    """
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            said = output.evalue if output.ename == "CheckFailure" else f"{output.ename}: {output.evalue}".rstrip(": ")
            return CellRun("error", IPYTHON_FILE.sub(r"(line \1)", ANSI.sub("", said)))
    return CellRun("passed")


async def _run_cell(client: NotebookClient, index: int, seconds: int, grace: float, limit: str) -> CellRun:
    """Run one cell; nbclient interrupts it after ``seconds``, and we give up on it ``grace`` later.

    ``limit`` says which limit that is, as the end of "the cell ...".
    """
    cell = client.nb.cells[index]
    client.timeout = seconds
    started = time.monotonic()
    running = asyncio.ensure_future(client.async_execute_cell(cell, index))
    try:
        await asyncio.wait({running}, timeout=seconds + grace)
    finally:  # also on Ctrl-C: collect the cell's end, so that nothing is left unreported
        running.cancel()
        (ended,) = await asyncio.gather(running, return_exceptions=True)
    if isinstance(ended, (DeadKernelError, asyncio.CancelledError)):  # nbclient says "dead" when cancelled, too
        if time.monotonic() - started >= seconds:
            return CellRun("stuck", f"{_describe(cell)} {limit} and did not stop when interrupted.")
        return CellRun(
            "died", f"the Python process stopped in {_describe(cell)} (os._exit, a crash, or too much memory)."
        )
    if isinstance(ended, BaseException):
        raise ended
    if time.monotonic() - started >= seconds:
        return CellRun("timed out", f"{_describe(cell)} {limit} and was stopped.")
    return _cell_run(cell)


async def _stop_kernel(client: NotebookClient) -> None:
    if client.kc is not None:
        client.kc.stop_channels()
    with contextlib.suppress(Exception):  # already gone: nothing left to stop
        await client.km.shutdown_kernel(now=True)


async def run_chapter(chapter: Chapter, limits: Limits, scratch: Path, env: dict) -> dict[int, CellRun]:
    """Run a copy of the notebook cell by cell; how each code cell ended, by index.

    ``scratch`` holds the kernelspec of this Python and the kernel's connection files.
    """
    notebook = copy.deepcopy(chapter.notebook)
    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    connection = str(scratch / f"k{uuid.uuid4().hex[:8]}.json")  # short: IPC socket paths have a length limit
    km = AsyncKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(scratch)]),
        transport="tcp" if os.name == "nt" else "ipc",
        connection_file=connection,
    )
    client = NotebookClient(
        notebook,
        km=km,
        allow_errors=True,
        interrupt_on_timeout=True,
        startup_timeout=120,
        resources={"metadata": {"path": str(chapter.path.resolve().parent)}},
        log=QUIET,
    )
    try:
        await client.async_start_new_kernel(env=env)
        await client.async_start_new_kernel_client()
    except Exception as error:  # any failure to start means the same to the student
        await _stop_kernel(client)
        why = ANSI.sub("", str(error)).strip().splitlines()[:1]
        return {
            i: CellRun(
                "not run",
                f"the Python kernel did not start ({why[0] if why else type(error).__name__}); "
                "run `python -m autograder doctor`.",
            )
            for i in code
        }
    runs: dict[int, CellRun] = {}
    stopped = ""
    deadline = time.monotonic() + limits.notebook
    try:
        for index in code:
            remaining = deadline - time.monotonic()
            if not stopped and remaining < 1:
                stopped = f"the notebook used up its {limits.notebook:g} s before this cell."
            if stopped:
                runs[index] = CellRun("not run", stopped)
                continue
            seconds = max(1, int(min(limits.cell, remaining)))
            limit = (
                f"ran longer than {seconds} s"
                if seconds == int(limits.cell)
                else f"was still running when the notebook's {limits.notebook:g} s ran out"
            )
            runs[index] = run = await _run_cell(client, index, seconds, limits.grace, limit)
            if run.outcome in ("stuck", "died"):
                stopped = f"the notebook stopped at {_describe(notebook.cells[index])}."
    finally:
        await _stop_kernel(client)
    return runs


async def _run_all(chapters: list[Chapter], limits: Limits, jobs: int, scratch: Path, report) -> list[dict]:
    slots = asyncio.Semaphore(jobs)
    env = _kernel_env(jobs)

    async def one(chapter: Chapter) -> dict:
        async with slots:
            started = time.monotonic()
            runs = await run_chapter(chapter, limits, scratch, env)
            report(chapter, time.monotonic() - started)
            return runs

    return await asyncio.gather(*(one(chapter) for chapter in chapters))


def run_chapters(
    chapters: list[Chapter], limits: Limits = Limits(), jobs: int | None = None, report=lambda chapter, seconds: None
) -> list[dict[int, CellRun]]:
    """Run the notebooks, ``jobs`` at a time (default: one per core); each one's cell runs."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(chapters)))
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch:
        # a kernelspec of this Python, wherever it is installed and whatever Jupyter's python3 kernel is
        write_kernel_spec(Path(scratch) / KERNEL_NAME, overrides={"display_name": "autograder progress"})
        return _run_to_completion(_run_all(chapters, limits, jobs, Path(scratch), report))


def _run_to_completion(coroutine):
    """asyncio.run, also from a thread whose event loop is already running (a notebook, Playwright)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ----------------------------------------------------------------------------- judging


def _untouched(cell) -> bool:
    """The solution cell is as it was released (nbgrader's own test for "no answer")."""
    from nbgrader.utils import compute_checksum

    checksum = conventions.metadata(cell).get("checksum")
    return checksum is not None and checksum == compute_checksum(cell)


def judge(chapter: Chapter, runs: dict[int, CellRun]) -> list[ExerciseProgress]:
    """Each exercise's status from how its solution cell and its visible test cells ended."""
    progress = []
    for exercise in chapter.exercises:
        own = ([exercise.solution] if exercise.solution is not None else []) + exercise.visible_tests
        ended = [runs[i] for i in own]
        tests = [runs[i] for i in exercise.visible_tests]
        solution = runs[exercise.solution] if exercise.solution is not None else None
        if not exercise.visible_tests:
            status, reason = (
                Status.UNCHECKED,
                "it has no visible check: it is checked only when your notebook is graded.",
            )
        elif timed_out := [r for r in ended if r.outcome in ("timed out", "stuck")]:
            status, reason = Status.TIMED_OUT, timed_out[0].message
        elif died := [r for r in ended if r.outcome == "died"]:
            status, reason = Status.ERROR, died[0].message
        elif not_run := [r for r in ended if r.outcome == "not run"]:
            status, reason = Status.NOT_RUN, not_run[0].message
        elif all(r.outcome == "passed" for r in tests):
            status, reason = Status.DONE, ""
        elif exercise.solution is not None and _untouched(chapter.notebook.cells[exercise.solution]):
            status, reason = Status.NOT_STARTED, ""
        elif solution is not None and solution.outcome == "error":
            status, reason = Status.ERROR, f"the cell that defines it raised {solution.message}"
        else:
            status, reason = Status.FAILS, next(r.message for r in tests if r.outcome != "passed")
        earned = sum(exercise.test_points.get(i, 0.0) for i in exercise.visible_tests if runs[i].outcome == "passed")
        progress.append(
            ExerciseProgress(
                chapter.name, exercise.name, status, exercise.points, exercise.hidden_points, reason, earned
            )
        )
    return progress


def other_problems(chapter: Chapter, runs: dict[int, CellRun]) -> list[str]:
    """Errors in cells that belong to no exercise (the set-up cell, the student's own cells): they
    often explain why later checks fail."""
    owned = {i for e in chapter.exercises for i in [e.solution, *e.visible_tests]}
    return [
        f"{chapter.name}: {_describe(chapter.notebook.cells[i])} raised {run.message}"
        if run.outcome == "error"
        else f"{chapter.name}: {run.message}"
        for i, run in sorted(runs.items())
        if i not in owned and run.outcome not in ("passed", "not run")
    ]


def progress_of(
    chapters: list[Chapter], limits: Limits = Limits(), jobs: int | None = None, report=lambda chapter, seconds: None
) -> tuple[list[ExerciseProgress], list[str]]:
    """Every exercise of the notebooks with its status, and the errors outside exercises."""
    progress, problems = [], []
    for chapter, runs in zip(chapters, run_chapters(chapters, limits, jobs, report)):
        progress += judge(chapter, runs)
        problems += other_problems(chapter, runs)
    return progress, problems


# ----------------------------------------------------------------------------- the table


def _marks() -> tuple[str, str]:
    try:
        "\u2714\u2718".encode(sys.stdout.encoding or "ascii")
        return "\u2714", "\u2718"
    except (UnicodeEncodeError, LookupError):
        return "+", "-"


def _points(value: float) -> str:
    return f"{value:g}"


def table(progress: list[ExerciseProgress], problems: list[str] = ()) -> str:
    """The table with a total, why exercises are not done, and what the points mean.

    Points are counted as nbgrader will: a visible test cell earns its points when it passes, so the
    table shows the visible points earned of those available; the hidden checks' points are graded later.
    """
    yes, no = _marks()
    rows = [("chapter", "exercise", "visible checks", "visible points", "graded later")]
    last = None
    for item in progress:
        mark = yes if item.status is Status.DONE else no
        rows.append(
            (
                item.chapter if item.chapter != last else "",
                item.name,
                f"{mark} {item.status.value}",
                f"{_points(item.earned)} of {_points(item.visible_points)}",
                _points(item.hidden_points),
            )
        )
        last = item.chapter
    done = [p for p in progress if p.status is Status.DONE]
    visible = sum(p.visible_points for p in progress)
    hidden = sum(p.hidden_points for p in progress)
    rows.append(
        (
            "total",
            f"{len(done)} of {len(progress)} exercises done",
            "",
            f"{_points(sum(p.earned for p in progress))} of {_points(visible)}",
            _points(hidden),
        )
    )
    widths = [max(len(row[c]) for row in rows) for c in range(5)]

    def line(row) -> str:
        return "  ".join(
            [
                *(cell.ljust(w) for cell, w in zip(row[:3], widths)),
                *(cell.rjust(w) for cell, w in zip(row[3:], widths[3:])),
            ]
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    text = [line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])]

    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    reasons = [f"{p.chapter} / {p.name}: {p.reason}" for p in progress if p.reason and p.status is not Status.DONE]
    if reasons or problems:
        text += ["", "Why:"]
        for reason in [*problems, *reasons]:
            text += textwrap.wrap(reason, width, initial_indent="  ", subsequent_indent="    ")
    if any(p.status is Status.NOT_STARTED for p in progress):
        text += [
            "",
            "Not started: fill in the cells that say `# YOUR CODE HERE` (and delete `raise NotImplementedError()`).",
        ]
    note = (
        "Visible points: what the visible check cells that pass are worth, of what they can earn "
        "(nbgrader counts each graded cell on its own)."
    )
    if hidden:
        note += (
            f" Graded later: {_points(hidden)} of the {_points(visible + hidden)} points come from hidden "
            "checks, which run only when your notebook is graded: they try new inputs and edge cases, so an "
            "exercise done here can still lose them. None of them is counted above."
        )
    text += [""] + textwrap.wrap(note, width)
    return "\n".join(text)


def default_path() -> Path:
    """Where to look without a path: exercises/ in the working directory, else the working directory
    itself when it holds notebooks. Never the course's own copy elsewhere, which holds blank notebooks."""
    here = Path("exercises")
    if here.is_dir():
        return here
    if _notebooks_in(Path(".")):
        return Path(".")
    raise ProgressError(
        f"No path was given, and {Path.cwd()} has no exercises/ folder and no notebooks: give the "
        "notebook or the folder of notebooks to check, for example "
        "`python -m autograder progress path/to/exercises`."
    )


def main(path: Path | None, limits: Limits, jobs: int | None) -> int:
    """Print the progress table; 0 when it was printed, 2 for a path that holds no exercise notebook."""

    def report(chapter: Chapter, seconds: float) -> None:
        print(f"  ran {chapter.path} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    try:
        path = path or default_path()
        chapters, problems = find_chapters(path)
    except ProgressError as error:
        print(error, file=sys.stderr)
        return 2
    if chapters:
        print(
            f"Running {len(chapters)} notebook{'s' * (len(chapters) > 1)} from {path.resolve()} with "
            f"{sys.executable} (your notebooks are not changed)...",
            file=sys.stderr,
            flush=True,
        )
        progress, other = progress_of(chapters, limits, jobs, report)
        print(table(progress, other))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2 if problems else 0
