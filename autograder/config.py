"""Where the course lives, which device the checks use, and the secret seed of hidden checks.

Instructors choose with environment variables (they reach the kernels nbgrader starts):

- ``AUTOGRADER_DEVICE``: ``cpu`` or ``cuda`` (default: CUDA when available, else CPU);
- ``AUTOGRADER_SEED``: an integer that makes the hidden inputs unpredictable to students.
  Without it, the file ``.autograder-secret`` at the course root is read; without that,
  a fixed public seed is used: fine for practice, and refused by ``python -m autograder
  grade`` unless it is given ``--practice``;
- ``AUTOGRADER_COURSE_ROOT``: the repository root, when it cannot be found from the
  working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PUBLIC_SEED = 20240607


def device() -> torch.device:  # noqa: F821 (torch is imported on use, see autograder/__init__.py)
    import torch

    choice = os.environ.get("AUTOGRADER_DEVICE", "").strip().lower()
    if choice in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"AUTOGRADER_DEVICE={choice!r} asks for CUDA, but torch sees no GPU.")
    return torch.device(choice)


def course_root() -> Path:
    """The repository root: the folder holding ``nbgrader_config.py`` and ``solutions/``."""
    explicit = os.environ.get("AUTOGRADER_COURSE_ROOT")
    if explicit:
        return Path(explicit).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
                return folder
    raise FileNotFoundError(
        "Could not find the course folder (with nbgrader_config.py and solutions/); set AUTOGRADER_COURSE_ROOT to it."
    )


def _seed_text() -> tuple[str, str | None]:
    """Where the seed comes from (``AUTOGRADER_SEED``, the secret file or ``public``) and its text."""
    text = os.environ.get("AUTOGRADER_SEED", "")
    if text.strip():
        return "AUTOGRADER_SEED", text
    try:
        return ".autograder-secret", (course_root() / ".autograder-secret").read_text()
    except (OSError, FileNotFoundError):
        return "public", None


def seed_source() -> str:
    """``AUTOGRADER_SEED``, ``.autograder-secret`` or ``public`` (the seed printed in this repository)."""
    return _seed_text()[0]


def secret_seed() -> int:
    source, text = _seed_text()
    if text is None:
        return PUBLIC_SEED
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"The hidden-check seed ({source}) must be an integer, got {text.strip()!r}.") from None
