"""The course's check engine: ``check`` for the visible layer, ``check_hidden`` for grading.

    from autograder import check
    check("softmax", softmax)
"""
from .checks import check, check_hidden
from .errors import CheckFailure

__all__ = ["check", "check_hidden", "CheckFailure"]
