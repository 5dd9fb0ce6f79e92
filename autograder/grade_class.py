"""Grade a whole class: ``python -m autograder grade ASSIGNMENT``.

One task per submission runs on Dask distributed (``autograder/cluster.py``): on this
machine by default, or on an existing cluster. A task carries the submission's files to a
worker, which grades them with nbgrader's own API (``nbgrader autograde`` under this
course's ``nbgrader_config.py``: the sandbox, the time limits and the verdict outside the
kernel) in a scratch course of its own, and brings back the graded notebook and the
scores. Only this process writes: the graded notebooks into ``autograded/``, the scores
into the gradebook (any database nbgrader supports), and the report.

The report is a ledger: one entry per student, the last grading of each, rewritten after
every submission, so that a crash or a killed run loses no grade already written and
``--resume`` grades only the submissions still without one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from nbgrader.plugins.export import CsvExportPlugin

from .config import course_root
from .conventions import grade_id

GRADED, FAILED, TIMEOUT, SKIPPED, PENDING = "graded", "failed", "timed out", "skipped", "not run"
GRADER_FAILED = "grader failed"  # the grader could not run the notebook (its set-up, not the student's code): no score
NEEDS_ANOTHER_RUN = (FAILED, TIMEOUT, GRADER_FAILED)


@dataclass
class Outcome:
    student: str
    status: str = PENDING
    detail: str = ""
    score: float | None = None
    max_score: float | None = None
    seconds: float = 0.0
    review: str = ""  # what the instructor should look at (tampering found), though it was graded
    attempts: int = 0  # starts on a worker: more than one when a worker died during the submission
    graded_at: str = ""  # when this entry of the ledger was written (UTC, ISO 8601)
    feedback: str = ""  # what became of the feedback of an earlier grading, when there was one

    @classmethod
    def from_report(cls, data: dict) -> Outcome:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Graded:
    """What a worker brings back from one submission."""

    outcome: Outcome
    files: dict[str, bytes] = field(default_factory=dict)  # the autograded folder, by relative path
    timestamp: datetime.datetime | None = None
    notebooks: dict[str, dict] = field(default_factory=dict)  # name -> grades, comments, late penalty


def report_path(root: Path, assignment: str) -> Path:
    return root / f"grading-report-{assignment}.json"


def problem_with(notebook: Path, assignment: str, grade_ids: set[str]) -> str | None:
    """Why a submitted file cannot be graded, in one sentence; None when it can."""
    import nbformat

    if not notebook.is_file():
        return f"no {notebook.name} in the submission folder"
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as error:  # not JSON, not a notebook, an unreadable file: all the same to the instructor
        return f"{notebook.name} is not a readable notebook ({type(error).__name__})"
    found = {grade_id(c) for c in nb.cells}
    if grade_ids and not grade_ids & found:
        return f"{notebook.name} has none of {assignment}'s cells (is it another assignment's notebook?)"
    return None


def _expected_grade_ids(root: Path, assignment: str) -> set[str]:
    import nbformat

    source = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not source.is_file():
        return set()
    nb = nbformat.read(source, as_version=4)
    return {grade_id(c) for c in nb.cells} - {None}


def _tampering_found(autograded: Path) -> str:
    """What ``GradingExecute`` recorded as tampering in the autograded notebooks' metadata, if anything."""
    import nbformat

    return "; ".join(
        finding
        for path in sorted(autograded.glob("*.ipynb"))
        for finding in nbformat.read(path, as_version=4).metadata.get("autograder", {}).get("tampering", [])
    )


def _last_error(log: str) -> str:
    """The most telling line of nbgrader's log: an exception's message rather than its closing remarks."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    messages = [line.split("Error: ", 1)[1] for line in lines if re.match(r"^[\w.]+Error: ", line)]
    errors = [line for line in lines if "ERROR" in line and "see the the above traceback" not in line]
    return (messages or errors or lines or ["nbgrader reported a failure"])[-1][:300]


def _quiet_libraries() -> None:
    """Keep library noise off the instructor's console: nbgrader's models raise SQLAlchemy 2 deprecation
    warnings on every gradebook opened, and asyncio reports nbclient's last poll of a kernel stopped at a
    time limit as "Task was destroyed but it is pending"."""
    import logging

    from sqlalchemy import exc

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    warnings.filterwarnings("ignore", category=exc.SAWarning)
    warnings.filterwarnings("ignore", category=getattr(exc, "MovedIn20Warning", exc.SAWarning))
    warnings.filterwarnings("ignore", module="nbgrader")


def _api(course: Path, root: Path, db_url: str | None = None, release: Path | None = None):
    """nbgrader's API with the course's configuration, working in ``root`` (with its own gradebook unless given,
    and the student version written to ``release`` when given)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url or f"sqlite:///{root / 'gradebook.db'}"
    if release is not None:
        config.CourseDirectory.release_directory = str(release)
    return NbGraderAPI(config=config)


# --- On a worker: one submission --------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What every task of a run carries besides its submission, built once by the instructor's process."""

    gradebook: bytes  # a SQLite gradebook that holds the assignment (test cells, points, due date) and no student
    fingerprint: str  # of the course that built it (``fingerprint``): a worker grades only with the same course


def fingerprint(course: Path, assignment: str) -> str:
    """A hash of what grading ``assignment`` runs: the autograder package's code and the assignment's fixtures
    (where this process imports them from) and its folder of ``solutions/`` in ``course``. Files are named
    by their place in the package or the course, never by where those live: a worker's checkout and
    installed package are elsewhere than the instructor's. Hidden files and caches (``.ipynb_checkpoints``,
    ``__pycache__``) are left out: one checkout has them, another not."""
    import hashlib

    package = Path(__file__).resolve().parent
    tops = {"autograder": package, "course": Path(course)}
    found = [("autograder", p) for p in package.rglob("*.py")]
    found += [("autograder", p) for p in (package / "fixtures" / assignment).rglob("*")]
    found += [("course", p) for p in (Path(course) / "solutions" / assignment).rglob("*")]
    files = {}
    for top, path in found:
        parts = path.relative_to(tops[top]).parts
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in parts):
            files["/".join((top, *parts))] = path
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(course: Path, assignment: str, duedate=None, schema: str | None = None) -> Prepared:
    """The workers' gradebook of ``assignment``, generated from ``course``'s solutions by nbgrader's own step.

    Built here once rather than on every worker, whose first submission would wait for it. ``schema``:
    the version of nbgrader's tables in the class's gradebook, recorded in the new one as nbgrader
    records it; without it nbgrader asks an ``alembic`` process (2 s of CPU) for the version.
    """
    import sqlite3

    from nbgrader.api import Gradebook

    from . import preflight

    with tempfile.TemporaryDirectory(prefix=f"autograder-{assignment}-") as scratch:
        scratch = Path(scratch)
        db_url = f"sqlite:///{scratch / 'gradebook.db'}"
        if schema:
            with contextlib.closing(sqlite3.connect(scratch / "gradebook.db")) as db, db:
                db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
                db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (schema,))
        # Rooted in the course itself, as `nbgrader generate_assignment` is: nbgrader changes this process's
        # folder to the root while it works, and the workers started meanwhile begin in that folder.
        reply = _api(course, course, db_url, release=scratch / "release").generate_assignment(
            assignment, force=True, create=True
        )
        if not reply["success"]:
            raise preflight.NotReady(
                f"nbgrader could not build the workers' gradebook of {assignment} "
                f"({_last_error(reply.get('log', '') + reply.get('error', ''))}): "
                f"run `nbgrader generate_assignment {assignment} --force` to see why."
            )
        if duedate is not None:
            with Gradebook(db_url) as gradebook:
                gradebook.update_or_create_assignment(assignment, duedate=duedate)
        return Prepared((scratch / "gradebook.db").read_bytes(), fingerprint(course, assignment))


_FINGERPRINTS: dict[tuple[str, str], str] = {}  # (course, assignment) -> this worker's ``fingerprint``


def _same_course(course: Path, assignment: str, expected: str) -> bool:
    key = (str(course), assignment)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint(course, assignment)
    return _FINGERPRINTS[key] == expected


class _TimeLimit:
    """The time limit of one submission: past it, this worker's sandboxed kernels are killed, and killed
    again while the submission runs (a kernel still starting is stopped too). One task at a time runs
    on a grading worker (``cluster.check_workers``), so they are this submission's."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.passed = threading.Event()
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.finished.set()
        self.thread.join()

    def _watch(self) -> None:
        import psutil

        if self.finished.wait(self.seconds):
            return
        self.passed.set()
        while not self.finished.is_set():
            for child in psutil.Process().children(recursive=True):
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.finished.wait(1.0)


def _on_worker(device: str | None) -> None:
    """This worker's process as grading needs it: nbgrader finds alembic, the checks run on ``device``."""
    bin_folder = str(Path(sys.executable).parent)
    if bin_folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"  # nbgrader runs alembic by name
    if device:
        os.environ["AUTOGRADER_DEVICE"] = device
    _quiet_libraries()


def check_reference(assignment: str, device: str | None = None) -> tuple[bool, str]:
    """On a worker: the canary (``preflight.canary``); whether the reference scored full marks, and what it said."""
    from . import preflight

    _on_worker(device)
    try:
        return True, preflight.canary(course_root(), assignment)
    except preflight.NotReady as problem:
        return False, str(problem)


def grade_one(
    assignment: str,
    student: str,
    files: dict[str, bytes],
    timeout: float,
    prepared: Prepared,
    device: str | None = None,
) -> Graded:
    """Grade one student's submission (its files by relative path) on this machine; never raises.

    Runs where the worker runs: the course is this machine's (its solutions and secret seed), and
    must be the instructor's (``prepared.fingerprint``); the gradebook is a copy of
    ``prepared.gradebook``; the submission is written into a scratch folder and graded there.
    """
    started = time.perf_counter()
    outcome = Outcome(student)
    graded = Graded(outcome)
    _on_worker(device)
    work = Path(tempfile.mkdtemp(prefix="autograder-task-", dir="/tmp"))  # hidden in the sandbox but for the submission
    try:
        from nbgrader.api import Gradebook

        from .grading import RUNS

        course = course_root()
        if not _same_course(course, assignment, prepared.fingerprint):
            outcome.status = GRADER_FAILED
            outcome.detail = (
                f"not graded: this worker's copy of the course ({course}) differs from the instructor's "
                f"(its autograder package or solutions/{assignment}); update the worker's repository and grade it again"
            )
            return graded
        (work / "solutions").mkdir()
        (work / "solutions" / assignment).symlink_to(course / "solutions" / assignment)
        (work / "gradebook.db").write_bytes(prepared.gradebook)
        submitted = work / "submitted" / student / assignment
        for relative, data in files.items():
            (submitted / relative).parent.mkdir(parents=True, exist_ok=True)
            (submitted / relative).write_bytes(data)
        db_url = f"sqlite:///{work / 'gradebook.db'}"
        with _TimeLimit(timeout) as limit:
            reply = _api(course, work).autograde(assignment, student, force=True, create=True)
        autograded = work / "autograded" / student / assignment
        run = RUNS.pop(str(autograded.resolve()), None)  # what GradingExecute saw, in this process
        if limit.passed.is_set():
            outcome.status = TIMEOUT
            outcome.detail = f"ran longer than {timeout:.0f} s; grade it again with a longer --timeout"
        elif classify(outcome, reply, run):
            _collect(graded, Gradebook(db_url), assignment, student, autograded)
            outcome.review = _tampering_found(autograded)
            if run is not None and run.stopped:
                outcome.detail = f"stopped early: {run.stopped}"
    except Exception as error:  # keep grading the class; this one is recorded as failed
        outcome.status, outcome.detail = FAILED, f"{type(error).__name__}: {error}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if outcome.status != GRADED:
        graded.files, graded.notebooks = {}, {}
    outcome.seconds = time.perf_counter() - started
    return graded


def classify(outcome: Outcome, reply: dict, run) -> bool:
    """Whether nbgrader graded the submission. If not, ``outcome`` says why: the grader could not run it
    (``run``, what GradingExecute saw, holds a grader failure: no score, grade it again) or nbgrader
    refused the notebook (failed, with the telling line of its log)."""
    if run is not None and run.grader_failure:
        outcome.status, outcome.detail = GRADER_FAILED, f"not graded, grade it again once fixed: {run.grader_failure}"
        return False
    if not reply["success"]:
        outcome.status, outcome.detail = FAILED, _last_error(reply.get("log", "") + reply.get("error", ""))
        return False
    return True


def _collect(graded: Graded, gradebook, assignment: str, student: str, autograded: Path) -> None:
    with gradebook:
        submission = gradebook.find_submission(assignment, student)
        graded.timestamp = submission.timestamp
        for notebook in submission.notebooks:
            graded.notebooks[notebook.name] = {
                "late_submission_penalty": notebook.late_submission_penalty,
                "grades": {g.name: {"auto_score": g.auto_score, "max_score": g.max_score} for g in notebook.grades},
                "comments": {c.name: c.auto_comment for c in notebook.comments},
            }
        graded.outcome.status, graded.outcome.score = GRADED, submission.score
        graded.outcome.max_score = submission.max_score
    graded.files = {
        p.relative_to(autograded).as_posix(): p.read_bytes() for p in sorted(autograded.rglob("*")) if p.is_file()
    }


# --- Here: the class -------------------------------------------------------------------------


class ClassGrader:
    """The class's submissions, its ledger, and the one process that writes grades."""

    def __init__(
        self,
        assignment: str,
        timeout: float,
        root: Path | None = None,
        db_url: str | None = None,
        device: str | None = None,
    ):
        self.root = root or course_root()
        self.assignment = assignment
        self.timeout = timeout
        self.device = device
        self.db_url = db_url or self._configured_db_url()
        self.report = report_path(self.root, assignment)
        self.outcomes: dict[str, Outcome] = self._ledger()
        self._preparing: concurrent.futures.Future | None = None

    def _configured_db_url(self) -> str:
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()
        return config.CourseDirectory.get("db_url") or f"sqlite:///{self.root / 'gradebook.db'}"

    def _ledger(self) -> dict[str, Outcome]:
        """The entries of earlier runs; an unreadable report is kept aside, never silently replaced."""
        if not self.report.is_file():
            return {}
        try:
            data = json.loads(self.report.read_text())
            return {s: Outcome.from_report(o) for s, o in data["students"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            self.report.replace(self.report.with_suffix(".unreadable.json"))
            return {}

    def submissions(self) -> list[str]:
        folder = self.root / "submitted"
        return (
            sorted(p.parent.name for p in folder.glob(f"*/{self.assignment}") if p.is_dir()) if folder.is_dir() else []
        )

    def _save_report(self) -> None:
        data = {"assignment": self.assignment, "students": {s: asdict(o) for s, o in sorted(self.outcomes.items())}}
        temporary = self.report.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        temporary.replace(self.report)  # atomic: a killed run leaves the previous report, never half a file

    def _record(self, outcome: Outcome, progress) -> None:
        outcome.graded_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.outcomes[outcome.student] = outcome
        self._save_report()
        if progress:
            progress(outcome)

    def screen(self, students: list[str]) -> tuple[list[str], list[Outcome]]:
        """The students whose notebooks can be graded, and the others' entries (skipped, with the reason).

        Nothing is written yet: ``run`` records the skipped ones once the canary has passed.
        """
        grade_ids = _expected_grade_ids(self.root, self.assignment)
        todo, skipped = [], []
        for student in students:
            folder = self.root / "submitted" / student / self.assignment
            problem = problem_with(folder / f"{self.assignment}.ipynb", self.assignment, grade_ids)
            if problem:
                skipped.append(Outcome(student, SKIPPED, problem))
            else:
                todo.append(student)
        return todo, skipped

    def record_skipped(self, skipped: list[Outcome], progress=None) -> None:
        for outcome in skipped:
            self._add_student(outcome.student)  # so that the exported grades list the student, with the reason
            self._record(outcome, progress)

    def start_preparing(self) -> concurrent.futures.Future:
        """The workers' gradebook (``prepare``), built in a thread of its own: it is ready when the cluster is."""
        if self._preparing is None:
            duedate, schema = self._duedate_and_schema()
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prepare")
            self._preparing = pool.submit(prepare, self.root, self.assignment, duedate, schema)
            pool.shutdown(wait=False)  # the thread ends once the gradebook is built
        return self._preparing

    def run(
        self, todo: list[str], client, workers: int, progress=None, skipped: list[Outcome] = (), say=print
    ) -> dict[str, Outcome]:
        """Grade ``todo`` on the Dask ``client``'s cluster of ``workers``; their entries of the ledger are replaced.

        The canary (``check_reference``) goes first, on a worker, while the first students are graded
        on the others. Nothing is written before it passes: ``preflight.NotReady`` if it does not.
        ``skipped`` (from ``screen``) are recorded then too.
        """
        from . import cluster

        run = uuid.uuid4().hex[:8]
        say(f"canary: grading {self.assignment}'s reference solution as a student's, through the same sandbox...")
        canary = client.submit(check_reference, self.assignment, self.device, key=f"canary-{run}", pure=False)
        passed = False
        prepared = self.start_preparing().result()
        jobs = (
            (
                f"grade-{self.assignment}-{student}-{run}",
                (self.assignment, student, self._files(student), self.timeout, prepared, self.device),
            )
            for student in todo
        )
        with self._gradebook() as gradebook:  # one for the run: SQLAlchemy compiles each query once per engine
            for key, result, attempts in cluster.run(client, grade_one, jobs, window=4 * workers):
                if not passed:
                    passed = self._canary_passed(canary, skipped, progress, say)
                student = key.removeprefix(f"grade-{self.assignment}-").removesuffix(f"-{run}")
                outcome = self._outcome(student, result, attempts, gradebook)
                outcome.attempts = attempts
                self._record(outcome, progress)
        if not passed:
            self._canary_passed(canary, skipped, progress, say)
        return self.outcomes

    def _outcome(self, student: str, result, attempts: int, gradebook) -> Outcome:
        """A task's result written, or why there is none."""
        from distributed import KilledWorker

        if isinstance(result, KilledWorker):
            return Outcome(
                student,
                FAILED,
                f"its grading stopped {attempts} workers in turn; grade it again, "
                "and look at the workers' logs if it fails again",
            )
        if isinstance(result, Exception):  # Dask could not run the task: the cluster's set-up, not the student
            return Outcome(
                student,
                FAILED,
                f"the cluster could not run its grading ({type(result).__name__}: "
                f"{str(result).splitlines()[0] if str(result) else ''}); do the "
                "scheduler and workers have this course's environment?",
            )
        return self._write(result, gradebook)

    def _canary_passed(self, canary, skipped: list[Outcome], progress, say) -> bool:
        """Waits for the canary; once it passed, says so and records the skipped students."""
        say(self._canary_verdict(canary))
        self.record_skipped(skipped, progress)
        return True

    @staticmethod
    def _canary_verdict(canary) -> str:
        """What the canary said when the reference scored full marks; raises ``preflight.NotReady`` when it did not."""
        from distributed.client import FutureCancelledError
        from distributed.comm.core import CommClosedError

        from . import cluster, preflight

        try:
            passed, said = canary.result()
        except Exception as error:  # Dask could not run it, or it raised on the worker: the cluster's set-up
            if canary.status != "error" and isinstance(error, (FutureCancelledError, CommClosedError, OSError)):
                raise cluster.SchedulerLost(f"the Dask scheduler went away ({type(error).__name__})") from None
            raise preflight.NotReady(
                f"the cluster could not grade the reference notebook ({type(error).__name__}: {error}); "
                "do the scheduler and workers have this course's environment?"
            ) from None
        finally:
            canary.release()
        if not passed:
            raise preflight.NotReady(said)
        return said

    def _files(self, student: str) -> dict[str, bytes]:
        folder = self.root / "submitted" / student / self.assignment
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def _gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url)

    def _add_student(self, student: str) -> None:
        with self._gradebook() as gradebook:
            gradebook.update_or_create_student(student)

    def _duedate_and_schema(self) -> tuple[datetime.datetime | None, str | None]:
        """The assignment's due date, and the version of nbgrader's tables (``alembic_version``) when recorded."""
        from nbgrader.api import MissingEntry
        from sqlalchemy import exc, text

        with self._gradebook() as gradebook:
            try:
                duedate = gradebook.find_assignment(self.assignment).duedate
            except MissingEntry:
                raise SystemExit(
                    f"The gradebook {self.db_url} has no assignment {self.assignment!r}: "
                    f"run `nbgrader generate_assignment {self.assignment}` first."
                ) from None
            try:
                schema = gradebook.db.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except exc.SQLAlchemyError:
                gradebook.db.rollback()
                schema = None
        return duedate, schema

    def _write(self, graded: Graded, gradebook) -> Outcome:
        """A worker's result into the gradebook (one transaction) and autograded/, as nbgrader autograde would."""
        outcome = graded.outcome
        if outcome.status != GRADED:
            return outcome
        gradebook.update_or_create_student(outcome.student)
        extra = {"timestamp": graded.timestamp} if graded.timestamp else {}
        submission = gradebook.update_or_create_submission(self.assignment, outcome.student, **extra)
        for name, notebook in graded.notebooks.items():
            for cell, worker_grade in notebook["grades"].items():
                grade = gradebook.find_grade(cell, name, self.assignment, outcome.student)
                if grade.max_score != worker_grade["max_score"]:
                    gradebook.db.rollback()
                    return Outcome(
                        outcome.student,
                        FAILED,
                        f"the gradebook's copy of {self.assignment} changed while it was graded "
                        f"({cell} is worth {worker_grade['max_score']:g} there, {grade.max_score:g} here); "
                        "grade it again",
                        seconds=outcome.seconds,
                    )
                grade.auto_score = worker_grade["auto_score"]
                grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            for cell, text in notebook["comments"].items():
                gradebook.find_comment(cell, name, self.assignment, outcome.student).auto_comment = text
            gradebook.find_submission_notebook(
                name, self.assignment, outcome.student
            ).late_submission_penalty = notebook["late_submission_penalty"]
        gradebook.db.commit()
        outcome.score, outcome.max_score = submission.score, submission.max_score
        self._write_autograded(outcome.student, graded.files)
        return outcome

    def _write_autograded(self, student: str, files: dict[str, bytes]) -> None:
        folder = self.root / "autograded" / student / self.assignment
        incoming = folder.with_name(f".{self.assignment}.incoming")
        shutil.rmtree(incoming, ignore_errors=True)
        for relative, data in files.items():
            (incoming / relative).parent.mkdir(parents=True, exist_ok=True)
            (incoming / relative).write_bytes(data)
        shutil.rmtree(folder, ignore_errors=True)
        incoming.rename(folder)

    def refresh_feedback(self, students: list[str]) -> None:
        """Feedback generated from an earlier grading no longer matches: regenerate it from the new one."""
        stale = [
            s
            for s in students
            if self.outcomes[s].status == GRADED and (self.root / "feedback" / s / self.assignment).is_dir()
        ]
        if not stale:
            return
        api = _api(self.root, self.root, self.db_url)
        for student in stale:
            reply = api.generate_feedback(self.assignment, student, force=True)
            self.outcomes[student].feedback = (
                "regenerated from this grading"
                if reply["success"]
                else "out of date: run `nbgrader generate_feedback` for this student"
            )
        self._save_report()


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


class LedgerExport(CsvExportPlugin):
    """``nbgrader export`` with one more column, ``grading``: why a student has no grade (from the grading reports)."""

    def export(self, gradebook) -> None:
        super().export(gradebook)
        dest = Path(self.to or "grades.csv")
        with dest.open(newline="") as handle:
            header, *rows = list(csv.reader(handle))
        root = Path(self.parent.coursedir.root)
        ledgers: dict[str, dict] = {}
        for row in rows:
            entry = dict(zip(header, row))
            assignment = entry["assignment"]
            if assignment not in ledgers:
                path = report_path(root, assignment)
                ledgers[assignment] = json.loads(path.read_text())["students"] if path.is_file() else {}
            row.append(_grading_note(ledgers[assignment].get(entry["student_id"], {})))
        with dest.open("w", newline="") as handle:
            csv.writer(handle).writerows([header + ["grading"], *rows])


def _grading_note(entry: dict) -> str:
    status = entry.get("status", GRADED)
    if status == GRADED:
        return ""
    then = "a new submission is needed" if status == SKIPPED else "it needs another grading run"
    return f"{status}: {entry.get('detail', '')} ({then})"


def main(
    assignment: str,
    workers: int,
    timeout: float,
    resume: bool,
    students: list[str],
    scheduler: str | None = None,
    db_url: str | None = None,
    device: str | None = None,
    practice: bool = False,
) -> int:
    from rich.console import Console
    from rich.markup import escape

    from . import cluster, preflight

    _quiet_libraries()
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: keep the summary's rows on one line each
        console = Console(width=200)
    grader = ClassGrader(assignment, timeout, db_url=db_url, device=device)
    everyone = grader.submissions()
    if not everyone:
        console.print(f"No submissions for {assignment!r} under {grader.root / 'submitted'}/<student>/{assignment}/.")
        return 2
    unknown = sorted(set(students) - set(everyone))
    if unknown:
        console.print(f"No submission of {assignment} from {', '.join(unknown)}.")
        return 2
    chosen = students or everyone
    if resume:
        chosen = [s for s in chosen if grader.outcomes.get(s, Outcome(s)).status != GRADED]
    if not chosen:
        console.print(f"Every submission of {assignment} is graded already (report: {grader.report}).")
        return 0
    if not ready_to_grade(console, grader.root, assignment, practice):
        return 2
    count = workers
    try:
        with _progress(console, assignment, len(chosen)) as progress:
            todo, skipped = grader.screen(chosen)
            if todo:
                grader.start_preparing()
                with cluster.connect(scheduler, workers, {"AUTOGRADER_COURSE_ROOT": str(grader.root)}) as client:
                    progress.workers = count = cluster.check_workers(client)
                    grader.run(todo, client, count, progress.advance, skipped, lambda line: console.print(escape(line)))
            else:
                grader.record_skipped(skipped, progress.advance)
    except (cluster.SchedulerLost, cluster.ClusterUnfit) as error:
        console.print(
            f"Stopped: {error}. The grades written so far are kept; "
            f"run the same command with --resume to grade the rest."
        )
        return 3
    except preflight.NotReady as problem:
        console.print(f"[bold red]Not grading {escape(assignment)}:[/] {escape(str(problem))}")
        return 2
    grader.refresh_feedback(chosen)
    _summary(console, grader, chosen, scheduler or f"{count} local workers")
    failures = sum(grader.outcomes[s].status in NEEDS_ANOTHER_RUN for s in chosen)
    skipped = sum(grader.outcomes[s].status == SKIPPED for s in chosen)
    return 1 if failures or skipped else 0


class _progress:
    """The progress bar, with a time-left estimate from the submissions' own grading times."""

    def __init__(self, console, assignment: str, total: int, workers: int = 1):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.workers, self.done, self.failures, self.busy = total, workers, 0, 0, []
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failures]} failed"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            console=console,
        )
        self.task = self.progress.add_task(f"grading {assignment}", total=total, failures=0, left="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, outcome: Outcome) -> None:
        """One more submission done. Time left: the rest at the graded ones' mean time, ``workers`` at once.

        (Not the pace of the first minute, which is mostly the workers starting.)
        """
        self.done += 1
        self.failures += outcome.status in NEEDS_ANOTHER_RUN
        if outcome.status != SKIPPED:
            self.busy.append(outcome.seconds)
        left = ""
        if self.busy and self.done < self.total:
            seconds = sum(self.busy) / len(self.busy) * -(-(self.total - self.done) // self.workers)
            left = f"about {datetime.timedelta(seconds=round(seconds))} left"
        self.progress.update(self.task, advance=1, failures=self.failures, left=left)


def _summary(console, grader: ClassGrader, chosen: list[str], where: str) -> None:
    from rich.table import Table

    table = Table(title=f"{grader.assignment}: {len(chosen)} submissions, graded on {where}")
    for column in ("student", "status", "score", "seconds", "detail"):
        table.add_column(column)
    for student in chosen:
        o = grader.outcomes[student]
        score = f"{o.score:g} / {o.max_score:g}" if o.score is not None else "-"
        notes = (
            [o.detail]
            + ([f"needs review: {o.review}"] if o.review else [])
            + (["retried after a worker stopped"] if o.attempts > 1 else [])
            + ([f"feedback {o.feedback}"] if o.feedback else [])
        )
        table.add_row(student, o.status, score, f"{o.seconds:.1f}", "; ".join(n for n in notes if n))
    console.print(table)
    failures = sum(grader.outcomes[s].status in NEEDS_ANOTHER_RUN for s in chosen)
    skipped = sum(grader.outcomes[s].status == SKIPPED for s in chosen)
    retried = sum(grader.outcomes[s].attempts > 1 for s in chosen)
    review = sum(bool(grader.outcomes[s].review) for s in chosen)
    console.print(
        f"Report: {grader.report}"
        + (f"; {failures} need another run (--resume)" if failures else "")
        + (f"; {review} need review (tampering found)" if review else "")
        + (f"; {skipped} could not be read and need a new submission" if skipped else "")
        + (f"; {retried} retried after a worker stopped, graded once" if retried else "")
        + "."
    )
