"""Grading a class on Dask distributed, with real components started here and stopped afterwards.

One mixed class of ch04 (correct, partial, empty, malformed, tampered, looping past the cell
limit) is graded four ways: a LocalCluster into SQLite (the reference); a `dask scheduler`
with two `dask worker` processes on loopback TCP into a real PostgreSQL server (Debian's
`postgresql`, on a Unix socket in a temporary folder); the same cluster with one worker killed
in the middle of a submission; and a scheduler that goes away, then `--resume`. Every score is
compared, grade by grade, with the reference and with what the submission deserves.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import ROOT, copy_course, env_with_venv, grade_id, package_source, read_notebook
from graded_class import Grading

from autograder.cluster import Loopback
from autograder.release import filled_notebook

pytestmark = [pytest.mark.grading, pytest.mark.xdist_group("cluster")]

ASSIGNMENT = "ch04_scaled_dot_product"
ENV = dict(
    AUTOGRADER_SEED="24680",
    AUTOGRADER_DEVICE="cpu",
    AUTOGRADER_CELL_TIMEOUT="6",  # the looping one waits it out five times; a correct cell of ch04 takes milliseconds
    AUTOGRADER_MEMORY_LIMIT=str(3 * 2**30),
)
TAMPER = (
    "def softmax(x, dim=-1):\n    return x\n"
    "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
)
# Past the cell limit without holding a core: the class is graded five times, and a busy loop would spin
# for the whole limit each time while the other tests wait for the CPU. A busy, stubborn loop is one of the
# attacks (tests/attacks/infinite_loop.md); here the point is the verdict a class gets, not the kill.
LOOP = "def softmax(x, dim=-1):\n    import time\n    while True:\n        time.sleep(1)\n"


def grade(course: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--timeout", "900", *args],
        cwd=course,
        env=env_with_venv(**ENV),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def new_class(destination: Path, db_url: str | None = None) -> Path:
    """A course with the assignment generated (into ``db_url`` when given) and the mixed class submitted."""
    course = copy_course(destination)
    extra = [f"--CourseDirectory.db_url={db_url}"] if db_url else []
    subprocess.run(
        ["nbgrader", "generate_assignment", ASSIGNMENT, "--force", *extra],
        cwd=course,
        env=env_with_venv(**ENV),
        check=True,
        capture_output=True,
    )
    solutions = read_notebook(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    released = read_notebook(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    names = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for student, filled, softmax in [
        ("correct", names, None),
        ("partial", names[:2], None),
        ("empty", [], None),
        ("tampered", names, TAMPER),
        ("looping", names, LOOP),
    ]:
        notebook = filled_notebook(released, solutions, set(filled))
        if softmax:
            next(c for c in notebook.cells if grade_id(c) == "softmax").source = softmax
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")
    folder = course / "submitted" / "malformed" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    return course


def deserved(course: Path) -> dict[str, dict[str, float]]:
    """What each gradable submission deserves, per graded cell, from the points in the solutions."""
    solutions = read_notebook(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    points = {
        grade_id(c): c.metadata["nbgrader"]["points"]
        for c in solutions.cells
        if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
    }
    names = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]

    def earned(passing):
        return {
            cell: (p if cell.removeprefix("test_").removesuffix("_hidden") in passing else 0.0)
            for cell, p in points.items()
        }

    # a wrong softmax also sinks the exercises that call it (see tests/attacks/README.md)
    return {
        "correct": earned(set(names)),
        "partial": earned(set(names[:2])),
        "empty": earned(set()),
        "tampered": earned({"attention_scores"}),
        "looping": earned(set()),
    }


def gradebook_scores(db_url: str) -> dict[str, dict[str, float]]:
    """Every grade row of the assignment, by student and cell; fails if a cell has two rows for one student."""
    from nbgrader.api import Grade, Gradebook, GradeCell, SubmittedAssignment, SubmittedNotebook

    found: dict[str, dict[str, float]] = {}
    with Gradebook(db_url) as gradebook:
        rows = (
            gradebook.db.query(SubmittedAssignment.student_id, GradeCell.name, Grade)
            .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Grade, Grade.notebook_id == SubmittedNotebook.id)
            .join(GradeCell, GradeCell.id == Grade.cell_id)
            .all()
        )
        for student, cell, grade in rows:
            assert cell not in found.setdefault(student, {}), f"{student} has two grades for {cell}"
            found[student][cell] = grade.score
    return found


def report(course: Path) -> dict:
    return json.loads((course / f"grading-report-{ASSIGNMENT}.json").read_text())["students"]


def assert_clean(run: subprocess.CompletedProcess) -> None:
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "Warning" not in output, output[-4000:]


# --- Real components ------------------------------------------------------------------------


def _postgres_program(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    assert found, f"{name} not found: install PostgreSQL with `bash tools/system_packages.sh test`"
    return found


@contextmanager
def postgres_server():
    """A PostgreSQL server of our own on a Unix socket in a temporary folder; yields a database URL."""
    folder = Path(tempfile.mkdtemp(prefix="autograder-pg-"))
    as_user = {}
    if os.geteuid() == 0:  # initdb refuses to run as root
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    data = folder / "data"

    def run(*command):
        subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=120, **as_user)

    try:
        run(_postgres_program("initdb"), "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8")
        run(
            _postgres_program("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "-t",
            "90",
            "-o",
            f"-k {folder} -c listen_addresses=''",
            "start",
        )
        run(_postgres_program("createdb"), "-h", str(folder), "-U", "grader", "gradebook")
        yield f"postgresql+psycopg://grader@/gradebook?host={folder}"
    finally:
        subprocess.run(
            [_postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            cwd=folder,
            capture_output=True,
            timeout=60,
            **as_user,
        )
        shutil.rmtree(folder, ignore_errors=True)


def kernel_running_under(process: subprocess.Popen) -> bool:
    try:
        return any(
            "ipykernel" in " ".join(child.cmdline()) for child in psutil.Process(process.pid).children(recursive=True)
        )
    except psutil.Error:
        return False


def grade_while(course: Path, args: list[str], action) -> subprocess.CompletedProcess:
    """Grade with ``args``, calling ``action()`` every 0.2 s until it returns True or the grading ends."""
    runner = subprocess.Popen(
        [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--timeout", "900", *args],
        cwd=course,
        env=env_with_venv(**ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acted = False
    while runner.poll() is None and not acted:
        acted = action()
        time.sleep(0.2)
    stdout, stderr = runner.communicate(timeout=1500)
    assert acted, "the grading ended before the fault could be made"
    return subprocess.CompletedProcess(runner.args, runner.returncode, stdout, stderr)


# --- The gradings, shared by the tests -------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The reference: the class graded on the default LocalCluster into SQLite."""
    course = new_class(tmp_path_factory.mktemp("local"))
    run = grade(course, "--workers", "2")
    return Grading.read(course, ASSIGNMENT, run, gradebook_scores(f"sqlite:///{course / 'gradebook.db'}"))


@pytest.fixture(scope="module")
def tcp(tmp_path_factory):
    """The same class on a scheduler and two TCP workers, into PostgreSQL; then graded again, then with a worker killed."""
    with postgres_server() as db_url:
        course = new_class(tmp_path_factory.mktemp("tcp"), db_url)
        cluster = Loopback(
            2, env_with_venv(**ENV, AUTOGRADER_COURSE_ROOT=str(course)), course, tmp_path_factory.mktemp("dask")
        )
        on_the_cluster = ("--scheduler", cluster.address, "--db", db_url)
        try:
            assert cluster.address.startswith("tcp://127.0.0.1:")
            first = Grading.read(course, ASSIGNMENT, grade(course, *on_the_cluster), gradebook_scores(db_url))
            again = Grading.read(course, ASSIGNMENT, grade(course, *on_the_cluster), gradebook_scores(db_url))

            killed_course = new_class(tmp_path_factory.mktemp("killed"))
            victim = cluster.workers[0]

            def kill_mid_submission() -> bool:
                if report_has_graded(killed_course) and kernel_running_under(victim):
                    cluster.kill(victim)
                    return True
                return False

            killed_run = grade_while(killed_course, ["--scheduler", cluster.address], kill_mid_submission)
        finally:
            cluster.stop()
    killed = Grading.read(
        killed_course, ASSIGNMENT, killed_run, gradebook_scores(f"sqlite:///{killed_course / 'gradebook.db'}")
    )
    return types.SimpleNamespace(first=first, again=again, killed=killed)


def report_has_graded(course: Path) -> bool:
    """True once one submission is graded: the workers are warm and in the middle of the class."""
    try:
        return any(o["status"] == "graded" for o in report(course).values())
    except (OSError, ValueError):
        return False


# --- The tests --------------------------------------------------------------------------------


def test_local_cluster_gives_every_submission_what_it_deserves(local):
    assert_clean(local.run)
    assert local.scores == deserved(local.course)
    assert (
        local.report["malformed"]["status"] == "skipped"
        and "not a readable notebook" in local.report["malformed"]["detail"]
    )
    assert local.run.returncode == 1  # the malformed one needs a new submission
    for student in local.report:
        assert student in local.run.stdout


def test_graded_notebooks_come_back_from_the_workers(local):
    for student in deserved(local.course):
        graded = read_notebook(local.course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        verdicts = [o for c in graded.cells for o in c.get("outputs", []) if o.get("ename") == "CheckFailure"]
        assert bool(verdicts) == (student != "correct"), student


def test_tcp_cluster_into_postgresql_matches_sqlite_grade_by_grade(local, tcp):
    assert_clean(tcp.first.run)
    assert tcp.first.scores == local.scores
    for student, entry in local.report.items():
        assert (tcp.first.report[student]["status"], tcp.first.report[student]["score"]) == (
            entry["status"],
            entry["score"],
        )


def test_a_class_graded_twice_has_each_grade_once(tcp):
    assert_clean(tcp.again.run)
    assert tcp.again.scores == tcp.first.scores


def test_a_worker_killed_mid_submission_loses_and_doubles_nothing(local, tcp):
    assert_clean(tcp.killed.run)
    assert tcp.killed.scores == local.scores
    retried = [s for s, o in tcp.killed.report.items() if o["attempts"] > 1]
    assert retried, "no submission was started twice: the kill missed"
    assert all(tcp.killed.report[s]["status"] == "graded" for s in retried)
    assert "retried after a worker stopped" in tcp.killed.run.stdout


def test_scheduler_gone_stops_with_one_sentence_and_resume_finishes(local, tmp_path):
    course = new_class(tmp_path / "course")
    cluster = Loopback(1, env_with_venv(**ENV, AUTOGRADER_COURSE_ROOT=str(course)), course, tmp_path)
    try:

        def kill_scheduler() -> bool:
            if report_has_graded(course):
                cluster.kill(cluster.scheduler)
                return True
            return False

        stopped = grade_while(course, ["--scheduler", cluster.address], kill_scheduler)
    finally:
        cluster.stop()
    assert stopped.returncode == 3
    assert_clean(stopped)
    assert "Stopped: the Dask scheduler went away" in stopped.stdout and "--resume" in stopped.stdout
    graded_before = {s: o["graded_at"] for s, o in report(course).items() if o["status"] == "graded"}
    assert 0 < len(graded_before) < len(deserved(course))
    resumed = grade(course, "--resume", "--workers", "1")
    assert_clean(resumed)
    assert gradebook_scores(f"sqlite:///{course / 'gradebook.db'}") == local.scores
    after = report(course)
    assert {s: after[s]["graded_at"] for s in graded_before} == graded_before, "--resume graded a graded one again"


def test_workers_without_the_course_stop_grading_with_the_clusters_fault_not_a_lost_scheduler(tmp_path):
    """The canary fails on the worker (its course folder is empty): the cluster's set-up, said as such."""
    course = new_class(tmp_path / "course")
    (tmp_path / "elsewhere").mkdir()
    cluster = Loopback(1, env_with_venv(**ENV, AUTOGRADER_COURSE_ROOT=str(tmp_path / "elsewhere")), course, tmp_path)
    try:
        run = grade(course, "--scheduler", cluster.address)
    finally:
        cluster.stop()
    assert run.returncode == 2, run.stdout + run.stderr
    said = " ".join(run.stdout.split())
    assert "could not grade the reference notebook (FileNotFoundError" in said and "went away" not in said
    assert_clean(run)
    assert not (course / f"grading-report-{ASSIGNMENT}.json").exists() and not (course / "autograded").exists()


def test_student_and_resume_add_to_the_ledger_and_feedback_is_regenerated(local):
    course = local.course
    subprocess.run(
        ["nbgrader", "generate_feedback", ASSIGNMENT, "--student", "partial"],
        cwd=course,
        env=env_with_venv(**ENV),
        check=True,
        capture_output=True,
    )
    before = report(course)
    run = grade(course, "--student", "partial", "--workers", "1")
    assert_clean(run)
    after = report(course)
    assert set(after) == set(before)
    assert {s: o for s, o in after.items() if s != "partial"} == {s: o for s, o in before.items() if s != "partial"}
    assert after["partial"]["graded_at"] >= before["partial"]["graded_at"]
    assert after["partial"]["feedback"] == "regenerated from this grading"
    assert "feedback regenerated" in run.stdout
    assert gradebook_scores(f"sqlite:///{course / 'gradebook.db'}") == local.scores

    resumed = grade(course, "--resume")  # only the malformed one is left: no cluster needed, skipped again
    assert resumed.returncode == 1 and "malformed" in resumed.stdout and "partial" not in resumed.stdout


def test_skipped_students_appear_in_the_exported_csv_with_the_reason(local, tmp_path):
    destination = tmp_path / "grades.csv"
    subprocess.run(
        ["nbgrader", "export", "--to", str(destination)],
        cwd=local.course,
        env=env_with_venv(**ENV),
        check=True,
        capture_output=True,
    )
    rows = {row["student_id"]: row for row in csv.DictReader(destination.open())}
    assert set(rows) == set(local.report)
    assert (
        rows["malformed"]["grading"].startswith("skipped: ")
        and "not a readable notebook" in rows["malformed"]["grading"]
    )
    assert float(rows["malformed"]["score"]) == 0.0
    assert rows["correct"]["grading"] == "" and float(rows["correct"]["score"]) == float(rows["correct"]["max_score"])


def test_a_submission_past_the_time_limit_is_stopped(tmp_path, monkeypatch):
    from autograder.grade_class import TIMEOUT, grade_one, prepare

    course = new_class(tmp_path / "course")
    notebook = read_notebook(course / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    next(c for c in notebook.cells if grade_id(c) == "softmax").source = "import time\ntime.sleep(10**6)\n"
    for name, value in {**ENV, "AUTOGRADER_CELL_TIMEOUT": str(10**6)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(course))
    prepared = prepare(course, ASSIGNMENT)
    started = time.monotonic()
    graded = grade_one(
        ASSIGNMENT, "sleeper", {f"{ASSIGNMENT}.ipynb": nbformat.writes(notebook).encode()}, 8.0, prepared
    )
    assert graded.outcome.status == TIMEOUT and "longer than 8 s" in graded.outcome.detail
    assert graded.files == {} and graded.notebooks == {}
    assert time.monotonic() - started < 600
    assert not [c for c in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]


def test_a_worker_grades_only_with_the_instructors_course(tmp_path, monkeypatch):
    """A clone of the course elsewhere grades; one whose solutions differ says so, with no score and no kernel."""
    from autograder.grade_class import GRADER_FAILED, NEEDS_ANOTHER_RUN, Prepared, fingerprint, grade_one

    clone = copy_course(tmp_path / "clone")
    (clone / "solutions" / ASSIGNMENT / ".ipynb_checkpoints").mkdir()
    (clone / "solutions" / ASSIGNMENT / ".ipynb_checkpoints" / f"{ASSIGNMENT}-checkpoint.ipynb").write_text("{}")
    assert fingerprint(clone, ASSIGNMENT) == fingerprint(ROOT, ASSIGNMENT)
    changed = copy_course(tmp_path / "changed")
    reference = changed / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    reference.write_text(reference.read_text().replace("softmax", "softmax ", 1))
    assert fingerprint(changed, ASSIGNMENT) != fingerprint(ROOT, ASSIGNMENT)
    assert fingerprint(ROOT, ASSIGNMENT) != fingerprint(ROOT, "ch07_masking")

    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(changed))
    submission = (ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
    graded = grade_one(
        ASSIGNMENT, "alice", {f"{ASSIGNMENT}.ipynb": submission}, 60.0, Prepared(b"", fingerprint(ROOT, ASSIGNMENT))
    )
    assert graded.outcome.status == GRADER_FAILED and graded.outcome.status in NEEDS_ANOTHER_RUN
    assert "differs from the instructor's" in graded.outcome.detail and graded.outcome.score is None
    assert graded.files == {} and graded.notebooks == {}


def test_a_courses_fingerprint_does_not_depend_on_where_the_course_or_the_package_lives(tmp_path):
    """The instructor's checkout and a worker's are in different places, and so are their packages (a
    checkout, site-packages): the same files give the same fingerprint wherever they are. Paths either side
    of the package's in sort order, since CI's fresh clone once sorted the other way from this machine's."""
    from autograder.grade_class import fingerprint

    package = package_source(tmp_path / "m")  # tmp_path/m/checkout/autograder
    courses = [copy_course(tmp_path / "m" / name) for name in ("a", "checkout/b", "z")]
    script = (
        "import sys; from pathlib import Path; from autograder.grade_class import fingerprint; "
        "print(*(fingerprint(Path(c), sys.argv[1]) for c in sys.argv[2:]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, ASSIGNMENT, *map(str, courses)],
        cwd=tmp_path,
        env={**env_with_venv(), "PYTHONPATH": str(package)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == [fingerprint(ROOT, ASSIGNMENT)] * len(courses), run.stderr


def test_the_workers_gradebook_records_the_class_gradebooks_schema_without_asking_alembic(tmp_path, monkeypatch):
    import sqlite3

    import nbgrader.api

    from autograder.grade_class import prepare

    course = copy_course(tmp_path / "course")
    asked = prepare(course, ASSIGNMENT)  # nbgrader asks alembic for the version itself
    schema = nbgrader.api.get_alembic_version()

    def no_alembic():
        raise AssertionError("alembic was asked")

    monkeypatch.setattr(nbgrader.api, "get_alembic_version", no_alembic)
    told = prepare(course, ASSIGNMENT, schema=schema)

    def recorded(prepared, name: str) -> tuple[list, list]:
        """The gradebook's schema version, and the assignment's graded cells with their points."""
        (tmp_path / name).write_bytes(prepared.gradebook)
        with sqlite3.connect(tmp_path / name) as db:
            version = db.execute("SELECT version_num FROM alembic_version").fetchall()
        with nbgrader.api.Gradebook(f"sqlite:///{tmp_path / name}") as gradebook:
            notebook = gradebook.find_notebook(ASSIGNMENT, ASSIGNMENT)
            return version, sorted((cell.name, cell.max_score) for cell in notebook.grade_cells)

    version, cells = recorded(told, "told.db")
    assert version == [(schema,)] and cells and (version, cells) == recorded(asked, "asked.db")
    assert told.fingerprint == asked.fingerprint


def test_workers_started_as_the_readme_says_get_the_local_clusters_settings():
    from autograder import cluster

    readme = " ".join((ROOT / "README.md").read_text().split())
    for name, value in cluster.environment().items():
        assert f"{name}={value}" in readme, f"the README does not start workers with {name}={value}"
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import dask, distributed; print([dask.config.get(k) for k in {list(cluster.SETTINGS)}])",
        ],
        env=dict(os.environ, **cluster.environment()),
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == str(list(cluster.SETTINGS.values()))
