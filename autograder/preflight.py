"""Before a class is graded: can every student get the grade their code earns?

``python -m autograder grade`` calls ``check_class`` before the first student. It

1. refuses the public seed (printed in this repository) unless ``--practice`` is given;
2. makes sure nbgrader's gradebook knows the assignment with the test cells of ``solutions/``
   (without ``nbgrader generate_assignment`` every student fails with "There was an error
   processing assignment"), running nbgrader's own generate step when it does not.

Then it grades a canary (``canary``): the reference notebook, through the same ``GradingExecute``
and the same sandbox as the students, on a grading worker while the first students are graded
beside it. It must score full marks before a single grade is written.

Each problem is one sentence that says what broke and how to fix it. The sentences that
``GradingExecute`` uses when it cannot run a notebook live here too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import config, conventions, sandbox

PUBLIC_SEED_WARNING = (
    f"No secret seed (AUTOGRADER_SEED or .autograder-secret): the hidden checks use the public seed "
    f"{config.PUBLIC_SEED} printed in the repository, which students can read. Fine for practice; "
    "for a class, `export AUTOGRADER_SEED=<a secret integer>` first."
)


class NotReady(Exception):
    """Grading would be wrong; the message says why and what to do, in one sentence."""


# ----------------------------------------------------------------------------- the checks, in order


def check_class(root: Path, assignment: str, practice: bool) -> Iterator[str]:
    """Run the checks before grading ``assignment`` (all but the canary); yields a line for each, raises NotReady."""
    yield check_seed(practice)
    prepared = prepare_assignment(root, assignment)
    if prepared:
        yield prepared


def check_seed(practice: bool) -> str:
    try:
        config.secret_seed()
    except ValueError as error:
        raise NotReady(f"{error} Set AUTOGRADER_SEED to a secret integer.") from None
    source = config.seed_source()
    if source != "public":
        return f"hidden checks: the secret seed from {source}"
    if not practice:
        raise NotReady(
            f"No secret seed: the hidden checks would use the public seed {config.PUBLIC_SEED} printed in "
            "the repository, so students could know their inputs. Set one with `export AUTOGRADER_SEED=<a "
            "secret integer>` (or write it to .autograder-secret in the course folder), or pass --practice "
            "to grade with the public seed."
        )
    return f"hidden checks: the public seed {config.PUBLIC_SEED} (--practice)"


def nbgrader_config(root: Path):
    """The course's nbgrader configuration, as ``nbgrader autograde`` run from ``root`` reads it."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def _why_not_prepared(root: Path, assignment: str, db_url: str) -> str | None:
    """Why the gradebook's copy of the assignment is not the one in solutions/ (None when it is)."""
    import nbformat
    from nbgrader.api import Gradebook, MissingEntry

    source = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    tests = [c for c in source.cells if conventions.is_test(c)]
    with Gradebook(db_url) as gradebook:
        try:
            gradebook.find_notebook(assignment, assignment)
        except MissingEntry:
            return "the gradebook does not have it yet"
        for cell in tests:
            name = conventions.grade_id(cell)
            try:
                stored, points = (
                    gradebook.find_source_cell(name, assignment, assignment).source,
                    gradebook.find_grade_cell(name, assignment, assignment).max_score,
                )
            except MissingEntry:
                return f"the gradebook has no test cell {name}"
            if stored != cell.source or points != float(cell.metadata["nbgrader"]["points"]):
                return f"the test cell {name} changed in solutions/"
    return None


def prepare_assignment(root: Path, assignment: str) -> str | None:
    """Record the assignment in the gradebook with nbgrader's generate step, when it is missing or stale.

    The student version is written to a scratch folder: ``exercises/`` (in git) is left alone.
    """
    from nbgrader.apps import NbGraderAPI

    settings = nbgrader_config(root)
    db_url = settings.CourseDirectory.get("db_url") or f"sqlite:///{root / 'gradebook.db'}"
    why = _why_not_prepared(root, assignment, db_url)
    if why is None:
        return None
    with tempfile.TemporaryDirectory(prefix="autograder-release-") as scratch:
        settings.CourseDirectory.root = str(root)
        settings.CourseDirectory.release_directory = scratch
        result = NbGraderAPI(config=settings).generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        said = [line for line in (result.get("error") or result.get("log") or "").splitlines() if line.strip()]
        raise NotReady(
            f"nbgrader could not record {assignment} in the gradebook ({said[-1].strip() if said else 'no reason given'}): "
            f"run `nbgrader generate_assignment {assignment} --force` to see why."
        )
    return f"gradebook: recorded {assignment} from solutions/ ({why}), as `nbgrader generate_assignment` does"


def canary(root: Path, assignment: str) -> str:
    """Grade the reference notebook as a student's; it must score full marks. Returns what the kernel reported."""
    import nbformat
    from nbgrader.utils import determine_grade, is_grade

    from .grading import RUNS, GraderFailure, GradingExecute

    folder = root / "solutions" / assignment
    reference = nbformat.read(folder / f"{assignment}.ipynb", as_version=4)
    with tempfile.TemporaryDirectory(prefix="autograder-canary-") as scratch:
        submission = Path(scratch) / assignment
        shutil.copytree(folder, submission, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        grader = GradingExecute(config=nbgrader_config(root))
        try:
            graded, _ = grader.preprocess(reference, {"metadata": {"path": str(submission)}})
        except GraderFailure:
            raise NotReady(
                f"The grader cannot run {assignment}'s reference notebook, so it would fail every student: "
                f"{RUNS[str(submission.resolve())].grader_failure}"
            ) from None
        probe = RUNS[str(submission.resolve())].probe or {}
    scores = [(cell, *determine_grade(cell)) for cell in graded.cells if is_grade(cell) and cell.cell_type == "code"]
    earned, total = sum(s for _, s, _ in scores), sum(m for _, _, m in scores)
    if earned < total:
        cell = next(c for c, s, m in scores if s < m)
        said = next((o.get("evalue", "") for o in cell.outputs if o.get("output_type") == "error"), "")
        raise NotReady(
            f"{assignment}'s reference solution scores {earned:g} / {total:g} through the grader here "
            f"({conventions.grade_id(cell)}: {said}), so students' scores would be wrong too: "
            "run `python -m autograder doctor`, and report it to the course's authors if it finds nothing."
        )
    return (
        f"canary: the reference solution scores {earned:g} / {total:g} in the grading kernel ({probe.get('python')}, "
        f"torch {probe.get('torch')}, autograder from {probe.get('autograder')}, sandbox "
        f"{'on' if sandbox.enabled() else 'off'})"
    )


# ----------------------------------------------------------------------------- why the grader could not run a notebook

SANDBOX_OFF = "set AUTOGRADER_SANDBOX=off to grade without the sandbox (the README says what that gives up)"


def kernel_did_not_start(error: Exception, submission: Path, exchange: Path) -> str:
    said = str(error).strip() or type(error).__name__
    bubblewrap = sandbox.why_it_cannot_start(submission, exchange)
    if bubblewrap:
        return (
            f"the grading sandbox cannot start on this machine (bubblewrap says: {bubblewrap}); fix what it names "
            "(a container must allow unprivileged user namespaces: run it with --privileged or a seccomp profile "
            f"that allows them), or {SANDBOX_OFF}."
        )
    return (
        f"the grading kernel did not start ({said}); `python -m autograder doctor` checks the python3 kernel "
        "that grading runs."
    )


def probe_failed(error: str) -> str:
    """``error``: what went wrong in the kernel (an exception, or another copy of autograder)."""
    package = Path(__file__).resolve().parent
    if sandbox.hides(package):
        return (
            f"the sandboxed kernel cannot use the course's packages ({error}): the grader's autograder lives in "
            f"{package}, which the sandbox hides; install the course where the sandbox shows it (a virtualenv's "
            f"site-packages), or {SANDBOX_OFF}."
        )
    return (
        f"the grading kernel cannot use the course's packages ({error}), while the grader runs {sys.executable} "
        f"with autograder from {package}: make the python3 kernel this Python (`{sys.executable} -m ipykernel "
        "install --user --name python3`), or install the course into the kernel's Python."
    )


def probe_stopped(timed_out: bool, memory_exceeded: bool, timeout: int) -> str:
    if memory_exceeded:
        return (
            f"the grading kernel needs more than {sandbox.gib(sandbox.memory_limit())} of memory just to import torch "
            "and the checks: raise AUTOGRADER_MEMORY_LIMIT (in bytes)."
        )
    if timed_out:
        return (
            f"the grading kernel did not import torch and the checks within {timeout} s of starting: the machine "
            "is too busy (grade with fewer --workers)."
        )
    return "the grading kernel stopped while importing torch and the checks: run `python -m autograder doctor`."


def no_gpu_in_kernel() -> str:
    return (
        "the checks are to run on CUDA, but the sandboxed kernel sees no GPU: grade with --device cpu "
        f"(or AUTOGRADER_DEVICE=cpu), or {SANDBOX_OFF}."
    )
