"""The one exception a check raises, and how it looks in a notebook."""


class CheckFailure(AssertionError):
    """A check did not pass. Its message is one or two plain sentences for the student.

    In Jupyter it is shown without a traceback: the frames inside the autograder
    tell a student nothing (IPython calls ``_render_traceback_`` when it exists).
    The cell still ends in an error, which is what nbgrader scores as a failure.
    """

    def _render_traceback_(self):
        red, reset = "\x1b[0;31m", "\x1b[0m"
        return [f"{red}CheckFailure{reset}: {self}"]
