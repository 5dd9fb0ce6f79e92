"""Grade a whole class in parallel: ``python -m autograder grade ASSIGNMENT``.

Each worker process imports nbgrader and torch once and grades one submission after
another through nbgrader's own API (the same ``nbgrader autograde`` with this course's
``nbgrader_config.py``), writing into the one gradebook. The parent shows progress,
stops a worker whose submission runs past the time limit (its sandboxed kernel dies
with it), and keeps a report file that is rewritten after every submission, so a crash
or a killed run loses no grade already written and says which submissions need
another run (``--resume`` grades only those).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import queue
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .config import course_root

GRADED, FAILED, TIMEOUT, SKIPPED, PENDING = "graded", "failed", "timed out", "skipped", "not run"
GRADER_FAILED = "grader failed"  # the grader could not run the notebook (its set-up, not the student's code): no score
NEEDS_ANOTHER_RUN = (FAILED, TIMEOUT, GRADER_FAILED)


@dataclass
class Outcome:
    student: str
    status: str = PENDING
    detail: str = ""
    score: Optional[float] = None
    max_score: Optional[float] = None
    seconds: float = 0.0
    review: str = ""  # what the instructor should look at (tampering found), though it was graded


def report_path(root: Path, assignment: str) -> Path:
    return root / f"grading-report-{assignment}.json"


def problem_with(notebook: Path, assignment: str, grade_ids: set[str]) -> Optional[str]:
    """Why a submitted file cannot be graded, in one sentence; None when it can."""
    import nbformat

    if not notebook.is_file():
        return f"no {notebook.name} in the submission folder"
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as error:  # not JSON, not a notebook, an unreadable file: all the same to the instructor
        return f"{notebook.name} is not a readable notebook ({type(error).__name__})"
    found = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    if grade_ids and not grade_ids & found:
        return f"{notebook.name} has none of {assignment}'s cells (is it another assignment's notebook?)"
    return None


def _expected_grade_ids(root: Path, assignment: str) -> set[str]:
    import nbformat

    source = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not source.is_file():
        return set()
    nb = nbformat.read(source, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata}


def _worker(root: str, assignment: str, db_url: str, tasks, results) -> None:
    """Grade the students that arrive on ``tasks`` until a None arrives."""
    os.chdir(root)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    from .grading import RUNS

    config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    config.CourseDirectory.db_url = db_url
    api = NbGraderAPI(config=config)
    while (student := tasks.get()) is not None:
        results.put(("started", student, os.getpid()))
        started = time.perf_counter()
        outcome = Outcome(student)
        try:
            reply = api.autograde(assignment, student, force=True, create=True)
            autograded = Path(api.coursedir.format_path(api.coursedir.autograded_directory, student, assignment))
            classify(outcome, reply, RUNS.pop(str(autograded.resolve()), None), assignment, db_url)
            if outcome.status == GRADED:
                outcome.review = _tampering_found(api, assignment, student)
        except Exception as error:  # keep grading the class; this one is recorded as failed
            outcome.status, outcome.detail = FAILED, f"{type(error).__name__}: {error}"
        outcome.seconds = time.perf_counter() - started
        results.put(("done", student, asdict(outcome)))


def _tampering_found(api, assignment: str, student: str) -> str:
    """What ``GradingExecute`` recorded as tampering in the autograded notebooks' metadata, if anything."""
    import nbformat

    folder = Path(api.coursedir.format_path(api.coursedir.autograded_directory, student, assignment))
    return "; ".join(finding for path in sorted(folder.glob("*.ipynb"))
                     for finding in nbformat.read(path, as_version=4).metadata.get("autograder", {}).get("tampering", []))


def classify(outcome: Outcome, reply: dict, run, assignment: str, db_url: str) -> None:
    """One submission's status from nbgrader's reply and what GradingExecute saw (``grading.Run``, or None
    when nbgrader stopped before running it): graded, failed (nbgrader refused the notebook) or grader failed."""
    if run is not None and run.grader_failure:
        outcome.status, outcome.detail = GRADER_FAILED, f"not graded, grade it again once fixed: {run.grader_failure}"
    elif reply["success"]:
        from nbgrader.api import Gradebook

        with Gradebook(db_url) as gradebook:
            submission = gradebook.find_submission(assignment, outcome.student)
            outcome.status, outcome.score, outcome.max_score = GRADED, submission.score, submission.max_score
        if run is not None and run.stopped:
            outcome.detail = f"stopped early: {run.stopped}"
    else:
        outcome.status = FAILED
        outcome.detail = _last_error(reply.get("log", "") + reply.get("error", ""))


def _last_error(log: str) -> str:
    """The most telling line of nbgrader's log: an exception's message rather than its closing remarks."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    messages = [line.split("Error: ", 1)[1] for line in lines if re.match(r"^[\w.]+Error: ", line)]
    errors = [line for line in lines if "ERROR" in line and "see the the above traceback" not in line]
    return (messages or errors or lines or ["nbgrader reported a failure"])[-1][:300]


class ClassGrader:
    def __init__(self, assignment: str, workers: int, timeout: float, root: Optional[Path] = None):
        self.root = root or course_root()
        self.assignment = assignment
        self.workers = max(1, workers)
        self.timeout = timeout
        self.report = report_path(self.root, assignment)
        self.outcomes: dict[str, Outcome] = {}

    def submissions(self) -> list[str]:
        folder = self.root / "submitted"
        return sorted(p.parent.name for p in folder.glob(f"*/{self.assignment}") if p.is_dir()) if folder.is_dir() else []

    def _save_report(self) -> None:
        data = {"assignment": self.assignment, "students": {s: asdict(o) for s, o in sorted(self.outcomes.items())}}
        temporary = self.report.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        temporary.replace(self.report)  # atomic: a killed run leaves the previous report, never half a file

    def run(self, students: list[str], progress=None) -> dict[str, Outcome]:
        grade_ids = _expected_grade_ids(self.root, self.assignment)
        todo = []
        for student in students:
            problem = problem_with(self.root / "submitted" / student / self.assignment / f"{self.assignment}.ipynb",
                                   self.assignment, grade_ids)
            self.outcomes[student] = Outcome(student, SKIPPED, problem) if problem else Outcome(student)
            if not problem:
                todo.append(student)
            elif progress:
                progress(self.outcomes[student])
        self._save_report()
        if todo:
            self._grade(todo, progress)
        return self.outcomes

    def _grade(self, todo: list[str], progress) -> None:
        context = multiprocessing.get_context("spawn")
        db_url = self._db_url()
        tasks, results = context.Queue(), context.Queue()
        for student in todo:
            tasks.put(student)
        workers = {}

        def start_worker():
            process = context.Process(target=_worker, args=(str(self.root), self.assignment, db_url, tasks, results),
                                      daemon=True)
            process.start()
            workers[process.pid] = process

        for _ in range(min(self.workers, len(todo))):
            start_worker()
        running: dict[str, tuple[int, float]] = {}  # student -> (worker pid, start time)
        remaining = set(todo)
        while remaining:
            try:
                kind, student, payload = results.get(timeout=1.0)
            except queue.Empty:
                kind = None
            if kind == "started":
                running[student] = (payload, time.monotonic())
            elif kind == "done":
                running.pop(student, None)
                remaining.discard(student)
                self.outcomes[student] = Outcome(**payload)
                self._save_report()
                if progress:
                    progress(self.outcomes[student])
            for late, (pid, since) in list(running.items()):
                if time.monotonic() - since > self.timeout:
                    workers.pop(pid).kill()
                    running.pop(late)
                    remaining.discard(late)
                    self.outcomes[late] = Outcome(late, TIMEOUT, f"ran longer than {self.timeout:.0f} s; grade it again "
                                                  "with a longer --timeout", seconds=self.timeout)
                    self._save_report()
                    if progress:
                        progress(self.outcomes[late])
                    if remaining - set(running):
                        start_worker()
            for pid, process in list(workers.items()):  # a worker that died on its own
                if not process.is_alive() and remaining:
                    workers.pop(pid)
                    for lost in [s for s, (p, _) in running.items() if p == pid]:
                        running.pop(lost)
                        remaining.discard(lost)
                        self.outcomes[lost] = Outcome(lost, FAILED, f"the grading worker stopped (exit code {process.exitcode}); grade it again")
                        self._save_report()
                        if progress:
                            progress(self.outcomes[lost])
                    if remaining - set(running):
                        start_worker()
        for _ in workers:
            tasks.put(None)
        for process in workers.values():
            process.join(timeout=30)

    def _db_url(self) -> str:
        """The course's gradebook, with a lock timeout long enough for several workers writing in turn."""
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()
        url = config.CourseDirectory.get("db_url") or f"sqlite:///{self.root / 'gradebook.db'}"
        return url + ("&" if "?" in url else "?") + "timeout=60" if url.startswith("sqlite") else url


def ready_to_grade(console, root: Path, assignment: str, practice: bool) -> bool:
    """The checks of ``autograder.preflight``, printed; False (with the reason) when grading must not start."""
    from rich.markup import escape

    from . import preflight

    try:
        for line in preflight.check_class(root, assignment, practice):
            console.print(escape(line))
    except preflight.NotReady as problem:
        console.print(f"[bold red]Not grading {escape(assignment)}:[/] {escape(str(problem))}")
        return False
    return True


def main(assignment: str, workers: int, timeout: float, resume: bool, students: list[str], practice: bool = False) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file or a pipe: keep the summary's rows on one line each
        console = Console(width=200)
    grader = ClassGrader(assignment, workers, timeout)
    everyone = grader.submissions()
    if not everyone:
        console.print(f"No submissions for {assignment!r} under {grader.root / 'submitted'}/<student>/{assignment}/.")
        return 2
    unknown = sorted(set(students) - set(everyone))
    if unknown:
        console.print(f"No submission of {assignment} from {', '.join(unknown)}.")
        return 2
    chosen = students or everyone
    if resume and grader.report.is_file():
        before = json.loads(grader.report.read_text())["students"]
        chosen = [s for s in chosen if before.get(s, {}).get("status") != GRADED]
        grader.outcomes = {s: Outcome(**o) for s, o in before.items() if s not in chosen}
    if not ready_to_grade(console, grader.root, assignment, practice):
        return 2
    failures = 0  # submissions that need another run (failed, timed out, grader failed); skipped ones need a new submission
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failures]} failed"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"grading {assignment}", total=len(chosen), failures=0)

        def advance(outcome: Outcome) -> None:
            nonlocal failures
            failures += outcome.status in NEEDS_ANOTHER_RUN
            progress.update(task, advance=1, failures=failures)
        grader.run(chosen, advance)
    table = Table(title=f"{assignment}: {len(chosen)} submissions, {workers} workers")
    for column in ("student", "status", "score", "seconds", "detail"):
        table.add_column(column)
    for student in chosen:
        o = grader.outcomes[student]
        score = f"{o.score:g} / {o.max_score:g}" if o.score is not None else "-"
        table.add_row(student, o.status, score, f"{o.seconds:.1f}", o.detail or (f"needs review: {o.review}" if o.review else ""))
    console.print(table)
    skipped = sum(grader.outcomes[s].status == SKIPPED for s in chosen)
    review = sum(bool(grader.outcomes[s].review) for s in chosen)
    console.print(f"Report: {grader.report}" + (f"; {failures} need another run (--resume)" if failures else "")
                  + (f"; {review} need review (tampering found)" if review else "")
                  + (f"; {skipped} could not be read and need a new submission" if skipped else "") + ".")
    return 1 if failures or skipped else 0
