"""The grader works wherever it is installed (issue 12, part 3).

The course package is installed into a fresh virtualenv under /tmp (a folder the sandbox
hides), once from a wheel and once editable from a checkout under /tmp, and a course
folder elsewhere is graded with that virtualenv's `python -m autograder grade`: the
canary runs the kernel with that copy, a correct submission scores full marks and a
wrong one its points. The virtualenv reaches torch, nbgrader and the rest through a
`.pth` file naming a link, under /tmp as well, to this test run's site-packages, so nothing
is downloaded (and a sandbox that showed only the interpreter's prefixes would lose them).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import BIN, copy_course, env_with_venv, package_source, purelib, virtualenv
from test_preflight import ASSIGNMENT, SEED, scores, submit


def virtualenv_under_tmp(folder: Path) -> Path:
    """A virtualenv that sees this Python's packages (not the course's own) and has nothing installed itself."""
    dependencies = folder / "dependencies"  # under /tmp too, as when the whole installation lives there
    python = virtualenv(folder, [dependencies], "course-dependencies.pth")
    dependencies.symlink_to(sysconfig.get_paths()["purelib"])
    return python


def install_wheel(tmp: Path, python: Path) -> Path:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(package_source(tmp)),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "wheels"),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp / "wheels").glob("*.whl")
    shutil.rmtree(tmp / "checkout")
    pip(python, "install", "--no-deps", "--no-index", str(wheel))
    return purelib(python) / "autograder"


def install_editable(tmp: Path, python: Path) -> Path:
    checkout = package_source(tmp)
    pip(python, "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(checkout))
    return checkout / "autograder"


def pip(python: Path, *args: str) -> None:
    done = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr


def clean_env(**extra: str) -> dict:
    env = env_with_venv(**extra)
    env.pop("PYTHONPATH", None)  # the course package comes from the virtualenv, nowhere else
    return env


@pytest.mark.grading
@pytest.mark.parametrize("install", [install_wheel, install_editable], ids=["wheel", "editable"])
def test_a_virtualenv_under_tmp_grades_a_course_elsewhere(tmp_path, install):
    python = virtualenv_under_tmp(tmp_path / "venv")
    package = install(tmp_path, python)
    course = copy_course(tmp_path / "srv" / "course")
    submit(course, "correct", {"pairwise_dot", "to_heads"})
    submit(course, "wrong", {"pairwise_dot"})
    env = clean_env(
        AUTOGRADER_SEED=SEED, AUTOGRADER_DEVICE="cpu", COLUMNS="250", PATH=f"{python.parent}:{BIN}:/usr/bin:/bin"
    )
    graded = subprocess.run(
        [str(python), "-m", "autograder", "grade", ASSIGNMENT, "--workers", "2"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = " ".join(graded.stdout.split())
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    assert f"canary: the reference solution scores 4 / 4 in the grading kernel ({python}," in said
    assert f"autograder from {package}, sandbox on" in said
    assert scores(course) == {"correct": 4, "wrong": 2}
