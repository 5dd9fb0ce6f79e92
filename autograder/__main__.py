"""``python -m autograder <command>``: the course's tools, in ``autograder/cli.py``."""

import sys

from .cli import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: the commands leave nothing half-written that needs a word
        print("Stopped.", file=sys.stderr)
        sys.exit(130)
