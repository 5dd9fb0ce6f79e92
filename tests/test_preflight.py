"""A broken grading set-up never turns into zeros, and the grader never runs blind (issue 12, parts 3 and 5).

One scratch course (ch00_warmup, the smallest assignment) is graded as a new instructor would:
without `nbgrader generate_assignment` first, with a correct, a wrong, a hanging and a
memory-hungry submission. Then its grading kernel is broken (it cannot import autograder)
and graded again, with plain `nbgrader autograde` and with `python -m autograder grade`.
The other tests break one thing each and check the sentence that names it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, copy_course, env_with_venv, grade_id, read_notebook
from nbclient.exceptions import CellTimeoutError

from autograder import config, doctor, grade_class, preflight, sandbox
from autograder.grading import GraderFailure, GradingExecute, Run
from autograder.release import filled_notebook

ASSIGNMENT = "ch00_warmup"
SEED = "8642"
CELL_TIMEOUT = 6  # the hanging one waits it out; a correct cell of ch00 takes milliseconds
# A cell put before `to_heads` in an otherwise correct submission. The hanging one sleeps: a busy loop would
# hold a core for the whole time limit while the other tests wait for it, and the kill of a busy, stubborn loop
# is one of the attacks (tests/attacks/infinite_loop.md); here the point is the sentence that says where it stopped.
EXTRA_CELL = {
    "hang": "import time\nwhile True:\n    time.sleep(1)\n",
    "hog": "hog = [bytearray(b'x') * 2**28 for _ in range(8)]  # 2 GiB, touched\n",
}
# A python3 kernel whose Python cannot import autograder: a grading set-up broken as when the sandbox hides it.
BLIND_KERNEL = [
    sys.executable,
    "-c",
    "import sys; sys.modules['autograder'] = None; from ipykernel import kernelapp; kernelapp.launch_new_instance()",
    "-f",
    "{connection_file}",
]
# A python3 kernel in which the probe's import of the checks takes SLOW_PROBE_SECONDS longer: a busy machine.
SLOW_PROBE_SECONDS = 3
SLOW_PROBE_KERNEL = [
    sys.executable,
    "-c",
    "import sys, time\n"
    "class Slow:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name == 'autograder.checks': time.sleep({SLOW_PROBE_SECONDS})\n"
    "sys.meta_path.insert(0, Slow())\n"
    "from ipykernel import kernelapp; kernelapp.launch_new_instance()",
    "-f",
    "{connection_file}",
]


def submit(course: Path, student: str, exercises: set[str], extra: str | None = None) -> None:
    solutions = read_notebook(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    released = read_notebook(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    nb = filled_notebook(released, solutions, exercises)
    if extra:
        index = [grade_id(c) for c in nb.cells].index("to_heads")
        nb.cells.insert(index, nbformat.v4.new_code_cell(extra))
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")


def run(course: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args,
        cwd=course,
        capture_output=True,
        text=True,
        timeout=900,
        env=env_with_venv(
            **{
                "AUTOGRADER_DEVICE": "cpu",
                "AUTOGRADER_CELL_TIMEOUT": str(CELL_TIMEOUT),
                "AUTOGRADER_MEMORY_LIMIT": str(2**30),
                "COLUMNS": "250",
                **env,
            }
        ),
    )
    assert "Traceback" not in done.stdout, done.stdout[-3000:]
    return done


def grade(course: Path, **env: str) -> subprocess.CompletedProcess:
    return run(course, sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--workers", "2", **env)


def scores(course: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}


def python3_kernel(folder: Path, argv: list[str]) -> str:
    """A JUPYTER_PATH under which the python3 kernel runs ``argv``."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return str(folder)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The class, graded once as a new instructor would (no generate_assignment, no seed at first)."""
    course = copy_course(tmp_path_factory.mktemp("course"))
    submit(course, "correct", {"pairwise_dot", "to_heads"})
    submit(course, "wrong", {"pairwise_dot"})
    for student, extra in EXTRA_CELL.items():
        submit(course, student, {"pairwise_dot", "to_heads"}, extra)
    unseeded = grade(course, AUTOGRADER_SEED="")
    seeded = grade(course, AUTOGRADER_SEED=SEED)
    report = json.loads((course / f"grading-report-{ASSIGNMENT}.json").read_text())["students"]
    return course, unseeded, seeded, report, scores(course)


@pytest.mark.grading
@pytest.mark.xdist_group("preflight_course")
def test_no_seed_is_refused_before_anything_is_graded(course):
    course, unseeded, _, _, _ = course
    assert unseeded.returncode == 2
    said = " ".join(unseeded.stdout.split())
    assert (
        f"Not grading {ASSIGNMENT}: No secret seed" in said
        and "export AUTOGRADER_SEED=" in said
        and "--practice" in said
    )


@pytest.mark.grading
@pytest.mark.xdist_group("preflight_course")
def test_an_unprepared_assignment_is_prepared_and_every_submission_scores_its_points(course):
    course, _, seeded, _, found = course
    assert seeded.returncode == 0, seeded.stdout[-3000:]
    assert f"gradebook: recorded {ASSIGNMENT} from solutions/ (the gradebook does not have it yet)" in seeded.stdout
    assert "canary: the reference solution scores 4 / 4 in the grading kernel" in seeded.stdout
    assert found == {"correct": 4, "wrong": 2, "hang": 2, "hog": 2}
    assert not (course / "exercises").exists(), "preparing the gradebook wrote the student version into the course"


@pytest.mark.grading
@pytest.mark.xdist_group("preflight_course")
def test_a_notebook_stopped_early_says_where_and_why(course):
    course, _, seeded, report, _ = course
    expected = {
        "hang": f"cell 8 ran longer than the time limit of {CELL_TIMEOUT} s",
        "hog": "cell 8 used more than 1 GiB of memory",
    }
    for student, words in expected.items():
        assert words in report[student]["detail"]
        assert words in " ".join(seeded.stdout.split())
        graded = read_notebook(course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        to_heads = next(c for c in graded.cells if grade_id(c) == "test_to_heads")
        assert words in to_heads.outputs[0]["evalue"]
    assert report["correct"]["detail"] == report["wrong"]["detail"] == ""


@pytest.mark.grading
@pytest.mark.xdist_group("preflight_course")
def test_a_kernel_that_cannot_import_the_course_records_no_score(course, tmp_path):
    course, _, _, _, before = course
    submit(course, "late", {"pairwise_dot", "to_heads"})
    broken = python3_kernel(tmp_path / "jupyter", BLIND_KERNEL)
    plain = run(
        course, "nbgrader", "autograde", ASSIGNMENT, "--student=[cl]*", AUTOGRADER_SEED=SEED, JUPYTER_PATH=broken
    )
    log = " ".join((plain.stdout + plain.stderr).split())
    assert plain.returncode != 0
    assert (
        "The grader could not run this notebook, so it is not graded: the grading kernel cannot use the course's" in log
    )
    assert "ModuleNotFoundError" in log
    after = scores(course)
    assert "late" not in after, "a submission the grader could not run has a score"
    assert after["correct"] == before["correct"], "a failed re-run changed an earlier grade"

    refused = grade(course, AUTOGRADER_SEED=SEED, JUPYTER_PATH=broken)
    said = " ".join(refused.stdout.split())
    assert refused.returncode == 2
    assert f"Not grading {ASSIGNMENT}: The grader cannot run {ASSIGNMENT}'s reference notebook" in said
    assert "cannot use the course's packages (ModuleNotFoundError" in said
    assert scores(course) == after, "the canary's failure let grading start"


@pytest.mark.grading
@pytest.mark.xdist_group("preflight_course")
def test_the_probe_is_not_held_to_the_cell_limit(course, tmp_path):
    """Importing torch and the checks before the first cell is the kernel's start, not a student's cell: a busy
    machine that takes longer over it than the cell limit still grades, each cell within the limit."""
    course, _, _, _, _ = course
    submit(course, "slowprobe", {"pairwise_dot", "to_heads"})
    slow = python3_kernel(tmp_path / "jupyter", SLOW_PROBE_KERNEL)
    limit = str(SLOW_PROBE_SECONDS - 1)
    graded = run(
        course,
        "nbgrader",
        "autograde",
        ASSIGNMENT,
        "--student=slowprobe",
        AUTOGRADER_SEED=SEED,
        AUTOGRADER_CELL_TIMEOUT=limit,
        JUPYTER_PATH=slow,
    )
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    assert scores(course)["slowprobe"] == 4


class _TimedOutProbe(GradingExecute):
    """GradingExecute whose probe cell runs past its limit; it notes the limit the probe had."""

    probe_limit = None

    def execute_cell(self, cell, index, **kw):
        self.probe_limit = self.timeout
        raise CellTimeoutError("timed out")


def test_a_probe_past_the_kernels_start_up_limit_is_the_graders_failure(tmp_path):
    execute = _TimedOutProbe(cell_timeout=2, startup_timeout=45)
    execute.km = type("Kernel", (), {"memory_exceeded": False})()
    execute.nb = nbformat.v4.new_notebook()
    with pytest.raises(GraderFailure) as failure:
        execute._probe(tmp_path)
    assert execute.probe_limit == 45, "the probe ran under the cell limit"
    assert execute.timeout == 2 and execute.nb.cells == [], "the probe left its limit or its cell behind"
    assert "did not import torch and the checks within 45 s of starting" in str(failure.value)


def test_a_sandbox_that_cannot_start_is_named_with_its_fix(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "bwrap"  # what bubblewrap says in a container without user namespaces
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace, likely because the kernel does "
        "not allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("AUTOGRADER_SEED", SEED)
    with pytest.raises(preflight.NotReady) as refused:
        preflight.canary(ROOT, ASSIGNMENT)
    said = str(refused.value)
    assert "the grading sandbox cannot start on this machine (bubblewrap says: bwrap: No permissions" in said
    assert "AUTOGRADER_SANDBOX=off" in said


def test_a_package_the_sandbox_hides_is_named(monkeypatch):
    package = Path(preflight.__file__).resolve().parent
    shown = sandbox.visible_again
    assert package in shown(sandbox.hidden_folders())
    assert not any(
        folder in (ROOT / "solutions").parents or folder == ROOT for folder in shown(sandbox.hidden_folders())
    )
    monkeypatch.setattr(sandbox, "visible_again", lambda hidden: [f for f in shown(hidden) if f != package])
    monkeypatch.setenv("AUTOGRADER_SEED", SEED)
    if not sandbox.hides(package):
        pytest.skip(f"{package} is outside the folders the sandbox hides")
    with pytest.raises(preflight.NotReady) as refused:
        preflight.canary(ROOT, ASSIGNMENT)
    said = str(refused.value)
    assert f"the grader's autograder lives in {package}, which the sandbox hides" in said


def test_the_seed_decides_whether_a_class_may_be_graded(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(tmp_path))
    monkeypatch.delenv("AUTOGRADER_SEED", raising=False)
    with pytest.raises(preflight.NotReady, match="No secret seed.*--practice"):
        preflight.check_seed(practice=False)
    assert "public seed" in preflight.check_seed(practice=True)
    (tmp_path / ".autograder-secret").write_text("271828\n")
    assert preflight.check_seed(practice=False) == "hidden checks: the secret seed from .autograder-secret"
    assert config.secret_seed() == 271828
    monkeypatch.setenv("AUTOGRADER_SEED", "not a number")
    with pytest.raises(preflight.NotReady, match=r"AUTOGRADER_SEED.*must be an integer, got 'not a number'"):
        preflight.check_seed(practice=True)


def test_doctor_says_when_grading_would_use_the_public_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(tmp_path))
    monkeypatch.delenv("AUTOGRADER_SEED", raising=False)
    [note] = doctor.check_seed()
    assert note.level == "note" and "refuses a class without --practice" in note.text
    assert "AUTOGRADER_SEED" in note.fix
    monkeypatch.setenv("AUTOGRADER_SEED", "99")
    assert [f.level for f in doctor.check_seed()] == ["ok"]
    monkeypatch.setenv("AUTOGRADER_SEED", "x")
    assert [f.level for f in doctor.check_seed()] == ["problem"]


def test_a_grader_failure_is_told_apart_from_the_students_failure():
    outcome = grade_class.Outcome("ada")
    assert not grade_class.classify(
        outcome, {"success": False, "log": "ERROR | boom"}, Run(grader_failure="the kernel did not start")
    )
    assert outcome.status == grade_class.GRADER_FAILED and outcome.score is None
    assert "the kernel did not start" in outcome.detail and outcome.status in grade_class.NEEDS_ANOTHER_RUN
    refused = grade_class.Outcome("bob")
    assert not grade_class.classify(refused, {"success": False, "log": "ValueError: bad metadata"}, None)
    assert refused.status == grade_class.FAILED and refused.detail == "bad metadata"
    assert grade_class.classify(grade_class.Outcome("cy"), {"success": True}, Run())


@pytest.mark.parametrize("touched, stopped", [(2**31, True), (2**27, False)])
def test_the_memory_watch_stops_a_process_tree_past_its_limit(touched, stopped):
    grows = (
        f"import time\nhog = []\nfor _ in range({touched // 2**26}):\n    hog.append(bytearray(b'x') * 2**26)\n"
        "    time.sleep(0.01)\ntime.sleep(1)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grows!r}])"]
    )
    watch = sandbox.MemoryWatch(child, limit=2**30)
    watch.start()
    child.wait(timeout=120)
    watch.join(timeout=10)
    assert watch.exceeded is stopped
    assert (child.returncode != 0) is stopped
