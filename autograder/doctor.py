"""``python -m autograder doctor``: is this machine ready for the course?

Checks the Python that runs it, the packages the course needs (and the versions
requirements.txt asks for), torch and the device the checks will use, the programs that
nbgrader and Jupyter run by name, the Jupyter kernel ``python3`` that the notebooks open
with (started for real, with a probe that imports the course's packages), the
visible-check fixtures, and where the hidden checks' seed comes from (a note, not a
problem, when it is the public one: students need no seed). Each problem is one line
with the command that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 10)
KERNEL = "python3"
KERNEL_TIMEOUT = 120  # seconds to start the kernel, then to run the probe (importing torch can be slow)
PACKAGES = {  # what the course uses them for: the distributions, each imported by its name with _ for -
    "the exercises": ("torch", "einops", "numpy"),
    "the figures": ("matplotlib",),
    "the checks' fixtures": ("safetensors",),
    "the book's interactive figures": ("ipywidgets",),
    "running notebooks": ("ipykernel", "jupyter-client"),
    "opening the notebooks": ("jupyterlab",),
    "reading notebooks": ("nbformat",),
    "python -m autograder progress": ("nbclient",),
    "grading": ("nbgrader",),
    "building the book": ("jupyter-book",),
}
PROGRAMS = (  # name, what needs it, whether only instructors do (then a missing one is a note, not a problem)
    ("jupyter", "opening the notebooks (jupyter lab)", False),
    ("alembic", "grading with nbgrader, which runs it by name", True),
)
PROBE = (
    "import json, sys\nimport torch, autograder\n"
    "print(json.dumps({'python': sys.executable, 'torch': torch.__version__}))"
)


@dataclass
class Finding:
    """One line of the report: ``ok``, a ``problem`` (with the command that fixes it) or a ``note``."""

    level: str
    text: str
    fix: str = ""


def ok(text: str) -> Finding:
    return Finding("ok", text)


def problem(text: str, fix: str) -> Finding:
    return Finding("problem", text, fix)


# ----------------------------------------------------------------------------- fix commands


def _course_root() -> Path | None:
    try:
        from .config import course_root

        return course_root()
    except (ImportError, FileNotFoundError):  # config needs torch, which may be what is missing
        return None


def _course_file(name: str) -> Path | None:
    root = _course_root()
    return root / name if root is not None and (root / name).exists() else None


def _shown(path: Path) -> str:
    """A path as short as it can be from the working directory."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def _python() -> str:
    """How to call this Python from the shell: ``python`` when that is it, else its full path."""
    found = shutil.which("python")
    return "python" if found and Path(found) == Path(sys.executable) else sys.executable


def pip_install() -> str:
    requirements = _course_file("requirements.txt")
    return f"{_python()} -m pip install -r {_shown(requirements) if requirements else 'requirements.txt'}"


def _activate() -> str | None:
    """The command that activates this Python's virtualenv, when it runs in one."""
    if sys.prefix == sys.base_prefix:
        return None
    script = Path(sys.executable).parent / "activate"
    return _shown(script.with_suffix(".bat")) if os.name == "nt" else f"source {_shown(script)}"


def install_kernel() -> str:
    return f"{_python()} -m ipykernel install --user --name {KERNEL}"


# ----------------------------------------------------------------------------- the checks


def check_python() -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] >= MIN_PYTHON:
        return [ok(f"Python {version} ({sys.executable})")]
    wanted = ".".join(map(str, MIN_PYTHON))
    return [
        problem(
            f"Python {version} is too old: the course needs Python {wanted} or newer.",
            "install Python 3.11, then: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt",
        )
    ]


def check_virtualenv() -> list[Finding]:
    """A note when the course folder has a virtualenv and this is not its Python."""
    venv = _course_file(".venv")
    if venv is None or Path(sys.prefix).resolve() == venv.resolve():
        return []
    script = venv / ("Scripts/activate.bat" if os.name == "nt" else "bin/activate")
    return [
        Finding(
            "note",
            f"This is {sys.executable}, not the course's virtualenv {_shown(venv)}.",
            _shown(script) if os.name == "nt" else f"source {_shown(script)}",
        )
    ]


def _required_versions() -> dict:
    """Version specifiers of requirements.txt by distribution name, when the file and `packaging` are there."""
    requirements = _course_file("requirements.txt")
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:
        return {}
    if requirements is None:
        return {}
    wanted = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        wanted[canonicalize_name(requirement.name)] = requirement
    return wanted


def check_packages() -> list[Finding]:
    wanted = _required_versions()
    findings = []
    for purpose, distributions in PACKAGES.items():
        findings += [_check_package(distribution, purpose, wanted) for distribution in distributions]
    return findings


def _check_package(distribution: str, purpose: str, wanted: dict) -> Finding:
    """Whether ``distribution`` imports, in a version requirements.txt accepts."""
    module = distribution.replace("-", "_")
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken install raises more than ImportError
        return problem(
            f"{module} cannot be imported ({type(error).__name__}: {error}); the course needs it for {purpose}.",
            pip_install(),
        )
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(sys.modules[module], "__version__", "")
    requirement = wanted.get(distribution)
    if requirement is not None and version and not requirement.specifier.contains(version, prereleases=True):
        return problem(f"{distribution} {version} is installed, but the course needs {requirement}.", pip_install())
    return ok(f"{distribution} {version}".rstrip())


def check_device() -> list[Finding]:
    """torch's view of the GPU, and the device the checks will use."""
    if "torch" not in sys.modules:
        return []
    import torch

    from .config import device

    try:
        chosen = device()
    except Exception as error:  # a wrong AUTOGRADER_DEVICE
        said = str(error).strip()
        if "AUTOGRADER_DEVICE" not in said:
            said = f"AUTOGRADER_DEVICE={os.environ.get('AUTOGRADER_DEVICE')!r} is not a device torch knows ({said})."
        return [problem(said, "unset AUTOGRADER_DEVICE")]
    if not torch.cuda.is_available():
        return [ok("no CUDA GPU: the checks run on the CPU, which is all this course needs")]
    name = torch.cuda.get_device_name(0)
    if chosen.type != "cuda":
        return [
            ok(
                f"CUDA GPU {name}, but the checks run on the CPU (AUTOGRADER_DEVICE={os.environ.get('AUTOGRADER_DEVICE')})"
            )
        ]
    try:
        torch.ones(2, device=chosen).sum().item()
    except Exception as error:  # a driver that does not match the CUDA build of torch
        return [
            problem(
                f"torch sees the GPU {name} but cannot compute on it ({type(error).__name__}: {error}).",
                "export AUTOGRADER_DEVICE=cpu   # or install the torch build that matches your CUDA driver",
            )
        ]
    return [ok(f"CUDA GPU {name} (CUDA {torch.version.cuda}): the checks run on it")]


def check_programs() -> list[Finding]:
    findings = []
    for program, purpose, instructors_only in PROGRAMS:
        found = shutil.which(program)
        if found:
            findings.append(ok(f"{program} on PATH ({found})"))
            continue
        beside = any((Path(sys.executable).parent / f"{program}{suffix}").exists() for suffix in ("", ".exe"))
        fix = (beside and _activate()) or pip_install()
        if instructors_only:
            findings.append(
                Finding(
                    "note",
                    f"{program} is not on PATH; only instructors need it, for {purpose}. Students can ignore this.",
                    fix,
                )
            )
        else:
            findings.append(problem(f"{program} is not on PATH; it is needed for {purpose}.", fix))
    return findings


def _probe_kernel(timeout: float) -> dict:
    """Start the python3 kernel in an empty folder (as a notebook's folder would be) and run the probe.

    Returns the probe's answer, or raises RuntimeError with one sentence.
    """
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="autograder-doctor-") as folder:
        km = KernelManager(
            kernel_name=KERNEL,
            transport="tcp" if os.name == "nt" else "ipc",
            connection_file=str(Path(folder) / "kernel.json"),
        )
        said, failed = [], []

        def collect(message: dict) -> None:
            if message["msg_type"] == "stream":
                said.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                failed.append(f"{message['content']['ename']}: {message['content']['evalue']}")

        try:
            km.start_kernel(cwd=folder)
        except Exception as error:  # no such executable, a kernelspec that cannot be launched
            raise RuntimeError(f"it did not start ({type(error).__name__}: {error})") from None
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=timeout)
            kc.execute_interactive(PROBE, timeout=timeout, output_hook=collect, allow_stdin=False)
        except RuntimeError as error:  # died at start, or no answer
            raise RuntimeError(f"it did not start ({error})") from None
        except TimeoutError:
            raise RuntimeError(f"it did not answer within {timeout:g} s") from None
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    if failed:
        raise RuntimeError(f"its Python cannot import the course's packages ({failed[0]})")
    try:
        return json.loads("".join(said).strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"it answered the probe with {''.join(said)[:200]!r}") from None


def check_kernel(timeout: float = KERNEL_TIMEOUT) -> list[Finding]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return []  # reported with the packages
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return [problem(f"There is no Jupyter kernel named {KERNEL}, which the notebooks open with.", install_kernel())]
    where = spec.argv[0] if spec.argv else "?"
    try:
        answer = _probe_kernel(timeout)
    except RuntimeError as error:
        # jupyter_client runs a kernel whose argv starts with python/python3 with the Python that starts it
        this_python = where in ("python", f"python{sys.version_info[0]}") or Path(where) == Path(sys.executable)
        fix = pip_install() if this_python and "cannot import" in str(error) else install_kernel()
        return [problem(f"The Jupyter kernel {KERNEL} ({where}, from {spec.resource_dir}): {error}.", fix)]
    return [ok(f"Jupyter kernel {KERNEL} runs {answer['python']} and imports autograder and torch {answer['torch']}")]


def check_fixtures() -> list[Finding]:
    """Every exercise's visible-check fixture file is there (they ship with the autograder package)."""
    if "torch" not in sys.modules:
        return []
    try:
        from .exercises import EXERCISES
        from .fixtures import path_for
    except Exception as error:  # an exercise module that does not load
        return [
            problem(
                f"The course's checks cannot be loaded ({type(error).__name__}: {error}).",
                "report this to the course staff",
            )
        ]
    missing = sorted(f"{e.assignment}/{e.name}" for e in EXERCISES.values() if not path_for(e).is_file())
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return [
            problem(
                f"The visible-check fixtures of {len(missing)} exercise{'s' * (len(missing) > 1)} are missing ({shown}).",
                f"{_python()} -m pip install -e {_shown(_course_root() or Path('.'))}"
                "   # authors: python -m autograder fixtures",
            )
        ]
    return [ok(f"fixtures of all {len(EXERCISES)} exercises")]


def check_seed() -> list[Finding]:
    """Where the hidden checks' seed comes from: a note (not a problem: students need none) when it is the public one."""
    try:
        from .config import PUBLIC_SEED, secret_seed, seed_source

        secret_seed()
    except ImportError:
        return []
    except ValueError as error:
        return [problem(str(error), "export AUTOGRADER_SEED=<a secret integer>")]
    if seed_source() != "public":
        return [ok(f"hidden checks use the secret seed from {seed_source()}")]
    return [
        Finding(
            "note",
            f"No secret seed (AUTOGRADER_SEED or .autograder-secret): grading uses the public seed "
            f"{PUBLIC_SEED}, so `python -m autograder grade` refuses a class without --practice.",
            "export AUTOGRADER_SEED=<a secret integer>   # instructors only; students need none",
        )
    ]


CHECKS = (
    check_python,
    check_virtualenv,
    check_packages,
    check_device,
    check_programs,
    check_kernel,
    check_fixtures,
    check_seed,
)


def diagnose() -> list[Finding]:
    """Every check's findings, in order. The kernel, a process of its own, starts first and runs
    while this process imports the packages."""
    with ThreadPoolExecutor(max_workers=1) as background:
        kernel = background.submit(check_kernel)
        return [finding for check in CHECKS for finding in (kernel.result() if check is check_kernel else check())]


# ----------------------------------------------------------------------------- the report


def _marks() -> dict:
    try:
        "\u2714\u2718".encode(sys.stdout.encoding or "ascii")
        return {"ok": "\u2714", "problem": "\u2718", "note": "!"}
    except (UnicodeEncodeError, LookupError):
        return {"ok": "ok", "problem": "XX", "note": "!"}


def report(findings: list[Finding]) -> str:
    marks = _marks()
    lines = []
    for finding in findings:
        lines.append(f"{marks[finding.level]} {finding.text}")
        if finding.fix:
            lines.append(f"    fix: {finding.fix}")
    problems = sum(f.level == "problem" for f in findings)
    lines.append("")
    lines.append(
        "Everything is ready."
        if not problems
        else f"{problems} problem{'s' * (problems > 1)}: run each fix, then `python -m autograder doctor` again."
    )
    return "\n".join(lines)


def main() -> int:
    """Print the report; 0 when nothing is broken, 1 otherwise."""
    print("Checking this machine for the course...", flush=True)
    findings = diagnose()
    print(report(findings))
    return 1 if any(f.level == "problem" for f in findings) else 0
