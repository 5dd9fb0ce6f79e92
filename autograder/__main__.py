"""Course tools: ``python -m autograder fixtures`` and ``python -m autograder release``."""
from __future__ import annotations

import argparse
import sys

from . import fixtures, release
from .config import course_root
from .exercises import ASSIGNMENTS, of_assignment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make_fixtures = commands.add_parser("fixtures", help="regenerate the visible-check fixtures from the reference solutions")
    make_fixtures.add_argument("assignments", nargs="*", help=f"default: all ({', '.join(ASSIGNMENTS)})")
    make_release = commands.add_parser("release", help="regenerate exercises/ from solutions/ with nbgrader")
    make_release.add_argument("assignments", nargs="*", help="default: all")
    args = parser.parse_args(argv)

    if args.command == "fixtures":
        unknown = sorted(set(args.assignments) - set(ASSIGNMENTS))
        if unknown:
            parser.error(f"unknown assignment {unknown[0]!r}; expected one of {', '.join(ASSIGNMENTS)}")
        for assignment in args.assignments or ASSIGNMENTS:
            for exercise in of_assignment(assignment):
                print(f"wrote {fixtures.generate(exercise).relative_to(course_root())}")
    elif args.command == "release":
        known = release.assignments()
        unknown = sorted(set(args.assignments) - set(known))
        if unknown:
            parser.error(f"unknown assignment {unknown[0]!r}; expected one of {', '.join(known)}")
        release.generate(args.assignments or known, course_root() / "exercises")
        print(f"wrote exercises/ for {', '.join(args.assignments or known)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
