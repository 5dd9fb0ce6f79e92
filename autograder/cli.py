"""The course's command-line tools: ``python -m autograder <command>``; ``--help`` after a command tells more.

Each command imports what it needs when it runs, so that ``doctor`` can still report a
broken install of the packages the other commands use. A new command is a function
``_name(args, parser) -> exit status``, whose docstring is its help, and a subparser made by ``_command`` in
``build_parser``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
from pathlib import Path


def _chosen(args, parser, known: list[str]) -> list[str]:
    """The assignments named on the command line (all ``known`` ones when none is), or a usage error."""
    unknown = sorted(set(args.assignments) - set(known))
    if unknown:
        parser.error(f"unknown assignment {unknown[0]!r}; expected one of {', '.join(known)}")
    return args.assignments or list(known)


def _fixtures(args, parser) -> int:
    """regenerate the visible-check fixtures from the reference solutions"""
    from . import fixtures
    from .config import course_root
    from .exercises import ASSIGNMENTS, of_assignment

    for assignment in _chosen(args, parser, ASSIGNMENTS):
        for exercise in of_assignment(assignment):
            print(f"wrote {fixtures.generate(exercise).relative_to(course_root())}")
    return 0


def _release(args, parser) -> int:
    """regenerate exercises/ from solutions/ with nbgrader"""
    from . import release
    from .config import course_root

    names = _chosen(args, parser, release.assignments())
    release.generate(names, course_root() / "exercises")
    print(f"wrote exercises/ for {', '.join(names)}")
    return 0


def _notebooks(args, parser) -> int:
    """make solutions/*/*.ipynb, the book's exercise tables and its exercise reference from the text notebooks and
    the declarations

    Write solutions/<a>/<a>.ipynb from the text notebook solutions/<a>/<a>.md and the exercises' declarations
    (points, difficulty, minutes, task), the exercise table of book/<a>.md and book/exercise_reference.md. Only
    files whose text changes are written.
    """
    from . import authoring
    from .config import course_root

    _chosen(args, parser, authoring.assignments())
    try:
        paths = (authoring.stale if args.check else authoring.write)(names=args.assignments or None)
    except authoring.AuthoringError as error:
        print(error, file=sys.stderr)
        return 1
    for path in paths:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(course_root())}")
    return 1 if args.check and paths else 0


def _progress(args, parser) -> int:
    """which exercises of your notebooks pass their visible checks

    Run your exercise notebooks (copies of them: the files are not changed) and print, per chapter and exercise,
    whether its visible checks pass and the visible points they earn. The hidden checks run only when your
    notebook is graded: their points are shown as graded later.
    """
    try:
        from . import progress
    except ImportError as error:
        print(
            f"progress needs {error.name or 'a package that is missing'}: run `python -m autograder doctor`.",
            file=sys.stderr,
        )
        return 1

    limits = progress.Limits(cell=args.timeout, notebook=args.notebook_timeout)
    return progress.main(args.path, limits, args.jobs)


def _doctor(args, parser) -> int:
    """check that this machine is ready for the course

    Check the Python, the packages, torch and its device, the programs nbgrader and Jupyter need, the python3
    Jupyter kernel and the checks' fixtures. Each problem comes with the command that fixes it. Exit status 1 when
    something is broken.
    """
    from . import doctor

    return doctor.main()


def _grade(args, parser) -> int:
    """autograde every submission of an assignment in parallel, into the gradebook

    Run nbgrader autograde (with this course's nbgrader_config.py) on every submission in
    submitted/<student>/<assignment>/, one Dask task per submission: on this machine (one worker per core) or on a
    Dask cluster (--scheduler). Only this process writes the gradebook, autograded/ and the report
    grading-report-<assignment>.json, a ledger of every student's last grading that --student and --resume add to.
    Shows a progress bar and a summary table. First it records the assignment in the gradebook when nbgrader does
    not have it (or has an older version), and grades the reference solution through the same sandbox: if that
    does not score full marks, it stops before any grade is written and says why.
    """
    try:
        import distributed  # noqa: F401 (the engine imports it when it starts; say now if it is missing)

        from . import grade_class
    except ImportError as error:
        print(
            f"grade needs {error.name or 'a package that is missing'}: run `pip install -r requirements.txt` "
            "(or `python -m autograder doctor`).",
            file=sys.stderr,
        )
        return 1

    if args.device:
        os.environ["AUTOGRADER_DEVICE"] = args.device
    return grade_class.main(
        args.assignment,
        args.workers,
        args.timeout,
        args.resume,
        args.student,
        scheduler=args.scheduler,
        db_url=args.db,
        device=args.device,
        practice=args.practice,
    )


def _kit(args, parser) -> int:
    """build the student kit: a wheel of the visible checks that holds no reference answer

    Build the wheel `transformer-course-kit` (the check engine, the fixtures, the catalogues of mistakes and the
    lent components; no reference solutions, hidden checks or grading tools). It is not written if it holds a line
    of any exercise's solution.
    """
    from . import kit

    try:
        wheel = kit.build(args.output)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"wrote {wheel} ({wheel.stat().st_size / 1024:.0f} KiB): students install it with `pip install {wheel.name}`")
    return 0


def _ships(module: str) -> bool:
    """Whether this install has ``module``: the student kit leaves out the instructor's tools."""
    return importlib.util.find_spec(f"{__package__ or 'autograder'}.{module}") is not None


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number of seconds of at least 1, got {text}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return int(text)


def _command(commands, name: str, run, assignments: bool = False) -> argparse.ArgumentParser:
    """The subparser of command ``name``, which runs ``run(args, parser)``. The first paragraph of ``run``'s
    docstring is the command's line in the list of commands, the rest its description (argparse rewraps both).
    With ``assignments``, the command takes the names of the assignments it works on (``_chosen`` reads them)."""
    help, _, description = (inspect.getdoc(run) or "").partition("\n\n")  # no docstrings under python -OO
    parser = commands.add_parser(name, help=help, description=description or None)
    parser.set_defaults(run=run)
    if assignments:
        parser.add_argument("assignments", nargs="*", help="default: all")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="The course's tools. `python -m autograder COMMAND --help` tells more about one.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    if _ships("reference"):
        _command(commands, "fixtures", _fixtures, assignments=True)

    if _ships("authoring"):
        notebooks = _command(commands, "notebooks", _notebooks, assignments=True)
        notebooks.add_argument(
            "--check", action="store_true", help="write nothing; list the stale files and exit 1 if there are any"
        )

    if _ships("release"):
        _command(commands, "release", _release, assignments=True)

    if _ships("kit"):
        make_kit = _command(commands, "kit", _kit)
        make_kit.add_argument("--output", type=Path, metavar="FOLDER", help="where to write it (default: _build/kit)")

    progress = _command(commands, "progress", _progress)
    progress.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="a notebook, an assignment folder, or a folder of them (default: exercises/ in this "
        "folder, else the notebooks of this folder)",
    )
    progress.add_argument(
        "--timeout",
        type=_seconds,
        default=300,
        metavar="SECONDS",
        help="time limit of one cell (default: 300, as at grading)",
    )
    progress.add_argument(
        "--notebook-timeout",
        type=_seconds,
        default=900,
        metavar="SECONDS",
        help="time limit of one notebook (default: 900)",
    )
    progress.add_argument(
        "--jobs", "-j", type=_count, metavar="N", help="notebooks run at once (default: one per CPU core)"
    )

    _command(commands, "doctor", _doctor)

    if not _ships("grade_class"):
        return parser
    grade = _command(commands, "grade", _grade)
    grade.add_argument("assignment")
    grade.add_argument(
        "--workers",
        type=_count,
        default=os.cpu_count() or 1,
        metavar="N",
        help="local worker processes (default: one per CPU core); ignored with --scheduler",
    )
    grade.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 or tls://...; its workers "
        "need this course's repository and environment, and --nthreads 1",
    )
    grade.add_argument(
        "--db",
        metavar="URL",
        help="the gradebook, e.g. postgresql+psycopg://user@host/gradebook (default: nbgrader's db_url "
        "from nbgrader_config.py, else gradebook.db)",
    )
    grade.add_argument(
        "--timeout", type=_seconds, default=1800, metavar="SECONDS", help="time limit of one submission (default: 1800)"
    )
    grade.add_argument("--device", choices=["cpu", "cuda"], help="where the checks run (default: CUDA when available)")
    grade.add_argument(
        "--resume",
        action="store_true",
        help="grade only the submissions without a grade in the report (after a stop or failures)",
    )
    grade.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="ID",
        help="grade only this student (repeatable); the other students' grades and report entries stay",
    )
    grade.add_argument(
        "--practice",
        action="store_true",
        help="grade with the public seed when no AUTOGRADER_SEED or .autograder-secret is set "
        "(refused otherwise: students can read the public seed)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, parser)
