"""python -m autograder doctor: finds what is broken on a machine, on purpose broken ones included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, env_with_venv

from autograder.__main__ import main

PACKAGE = ROOT / "autograder"


def doctor(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "doctor"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env_with_venv(PYTHONIOENCODING="utf-8", **env),
        timeout=600,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def problems(output: str) -> dict[str, str]:
    """Each problem line (without its mark) and the fix printed under it."""
    lines = output.splitlines()
    return {
        line[2:]: lines[i + 1].strip().removeprefix("fix: ")
        for i, line in enumerate(lines)
        if line.startswith("\u2718 ")
    }


def kernelspec(folder: Path, argv: list[str]) -> Path:
    """A Jupyter data folder whose kernel `python3` runs argv: put first on JUPYTER_PATH, it hides the real one."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return folder


def test_a_ready_machine(tmp_path):
    result = doctor(tmp_path)
    assert result.returncode == 0, result.stdout
    assert not problems(result.stdout)
    for line in (
        "\u2714 Python 3.",
        "\u2714 torch ",
        "\u2714 einops ",
        "\u2714 nbgrader ",
        "\u2714 jupyter-book ",
        "\u2714 alembic on PATH",
        "\u2714 Jupyter kernel python3 runs",
        "\u2714 fixtures of all",
    ):
        assert line in result.stdout
    assert result.stdout.rstrip().endswith("Everything is ready.")


# Its tests share one xdist group, so that the machine is broken and examined once, on one worker.
@pytest.fixture(scope="module")
def broken_machine(tmp_path_factory):
    """One machine with many things broken at once, each the way it happens to students."""
    tmp = tmp_path_factory.mktemp("broken")
    fakes = tmp / "fakes"  # first on PYTHONPATH: a broken matplotlib and an einops too old for the course
    (fakes / "matplotlib").mkdir(parents=True)
    (fakes / "matplotlib" / "__init__.py").write_text(
        "raise ImportError('libfreetype.so.6: cannot open shared object file')"
    )
    (fakes / "einops").mkdir()
    (fakes / "einops" / "__init__.py").write_text("")
    (fakes / "einops-0.1.0.dist-info").mkdir()
    (fakes / "einops-0.1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: einops\nVersion: 0.1.0\n")
    copy = tmp / "copy"  # the autograder package with one fixture missing
    shutil.copytree(PACKAGE, copy / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "autograder" / "fixtures" / "ch04_scaled_dot_product" / "softmax.safetensors").unlink()
    no_torch = tmp / "no_torch"  # the kernel runs another Python, one without torch
    (no_torch / "torch").mkdir(parents=True)
    (no_torch / "torch" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")")
    other_python = tmp / "other-python"
    other_python.write_text(f'#!/bin/sh\nPYTHONPATH={no_torch} exec {sys.executable} "$@"\n')
    other_python.chmod(0o755)
    jupyter = kernelspec(tmp / "jupyter", [str(other_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    empty_bin = tmp / "bin"  # a PATH without the virtualenv: no alembic, no jupyter
    empty_bin.mkdir()
    result = doctor(
        tmp,
        PATH=str(empty_bin),
        PYTHONPATH=f"{fakes}:{copy}",
        JUPYTER_PATH=str(jupyter),
        AUTOGRADER_DEVICE="banana",
        AUTOGRADER_COURSE_ROOT=str(ROOT),
    )
    return result, problems(result.stdout)


@pytest.mark.xdist_group("broken_machine")
def test_a_broken_machine_exits_1_with_a_fix_for_each_problem(broken_machine):
    result, found = broken_machine
    assert result.returncode == 1
    assert len(found) == 6, result.stdout
    assert all(fix for fix in found.values())
    assert result.stdout.rstrip().endswith("6 problems: run each fix, then `python -m autograder doctor` again.")


def fix_of(found: dict, start: str) -> str:
    (fix,) = [fix for text, fix in found.items() if text.startswith(start)]
    return fix


@pytest.mark.xdist_group("broken_machine")
def test_a_package_that_does_not_import_or_is_too_old(broken_machine):
    _, found = broken_machine
    assert "-m pip install -r " in fix_of(found, "matplotlib cannot be imported (ImportError: libfreetype.so.6")
    assert "requirements.txt" in fix_of(found, "einops 0.1.0 is installed, but the course needs einops>=0.8.")


def notes(output: str) -> dict[str, str]:
    """Each note line (without its mark) and the fix printed under it."""
    lines = output.splitlines()
    return {
        line[2:]: lines[i + 1].strip().removeprefix("fix: ") for i, line in enumerate(lines) if line.startswith("! ")
    }


@pytest.mark.xdist_group("broken_machine")
def test_programs_missing_from_path(broken_machine):
    result, found = broken_machine
    venv = sys.prefix != sys.base_prefix
    fix = fix_of(found, "jupyter is not on PATH")
    assert fix.startswith("source ") and fix.endswith("bin/activate") if venv else "pip install" in fix
    assert not [text for text in found if text.startswith("alembic")]  # instructors only: not a student's problem
    fix = fix_of(notes(result.stdout), "alembic is not on PATH; only instructors need it")
    assert fix.startswith("source ") and fix.endswith("bin/activate") if venv else "pip install" in fix


@pytest.mark.xdist_group("broken_machine")
def test_a_kernel_whose_python_lacks_the_course_packages(broken_machine):
    _, found = broken_machine
    fix = fix_of(found, "The Jupyter kernel python3")
    assert fix.endswith("-m ipykernel install --user --name python3")
    (text,) = [t for t in found if t.startswith("The Jupyter kernel python3")]
    assert "cannot import the course's packages (ModuleNotFoundError: No module named 'torch')" in text


@pytest.mark.xdist_group("broken_machine")
def test_a_wrong_device_setting_and_missing_fixtures(broken_machine):
    _, found = broken_machine
    assert fix_of(found, "AUTOGRADER_DEVICE='banana' is not a device torch knows") == "unset AUTOGRADER_DEVICE"
    assert "pip install -e" in fix_of(
        found, "The visible-check fixtures of 1 exercise are missing (ch04_scaled_dot_product/softmax)"
    )


def test_a_kernel_that_does_not_start(tmp_path):
    jupyter = kernelspec(tmp_path / "jupyter", [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"])
    result = doctor(tmp_path, JUPYTER_PATH=str(jupyter))
    assert result.returncode == 1
    (text,) = [t for t in problems(result.stdout) if t.startswith("The Jupyter kernel python3")]
    assert "it did not start" in text


def test_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--help"])
    assert done.value.code == 0
    assert "Exit status 1 when something is broken" in " ".join(capsys.readouterr().out.split())


def test_a_machine_without_torch(tmp_path):
    (tmp_path / "fake" / "torch").mkdir(parents=True)
    (tmp_path / "fake" / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')"
    )
    result = doctor(tmp_path, PYTHONPATH=str(tmp_path / "fake"))
    assert result.returncode == 1
    assert "pip install -r" in fix_of(problems(result.stdout), "torch cannot be imported (ModuleNotFoundError")
