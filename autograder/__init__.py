"""The course's check engine: ``check`` for the visible layer, ``check_hidden`` for grading.

    from autograder import check
    check("softmax", softmax)

The engine (and torch) is imported on first use, so that ``python -m autograder doctor``
can still run, and say what is missing, on a machine without torch.
"""

__all__ = ["check", "check_hidden", "CheckFailure"]


def __getattr__(name: str):
    if name in ("check", "check_hidden"):
        from . import checks

        return getattr(checks, name)
    if name == "CheckFailure":
        from .errors import CheckFailure

        return CheckFailure
    raise AttributeError(f"module 'autograder' has no attribute {name!r}")
