"""nbgrader's Execute step, made trustworthy: the verdict is reached where student code cannot reach it.

``GradingExecute`` replaces nbgrader's ``Execute`` in ``nbgrader_config.py``, so an
instructor still runs stock ``nbgrader autograde``. For each notebook it:

1. prepares, in the grader's process, the cases of every graded check (visible cases
   from the fixtures, hidden cases from the reference and the secret seed) and writes
   only their *inputs* to an exchange folder (``autograder.protocol`` says its layout);
2. runs the notebook in a sandboxed kernel (``autograder.sandbox``) in which
   ``check``/``check_hidden`` run those cases and write back plain results
   (safetensors, no pickle);
3. collects each test cell's results as soon as that cell ends (later cells cannot
   overwrite them), and replaces the test cell's outputs with the verdict: an error
   output that names the mistake, or a line saying the checks passed. Nothing the
   student's code printed, swallowed or faked in a test cell survives.

It also scans the student's code for forbidden built-ins (a name in the source cannot
be hidden by patching the runtime watch) and for tampering with the checks
(``autograder.tampering``: decided from what the code does, never from its words). What
it finds is written to the notebook's metadata (``autograder.tampering``), so the class
report can list the submission for review.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from . import config, conventions, preflight, protocol, sandbox, tampering
from .checks import hidden_plan, visible_plan
from .exercises import EXERCISES
from .forbidden import scan_forbidden
from .verdict import Plan, decide


class GraderFailure(RuntimeError):
    """The grader could not run a notebook: its set-up failed, not the student's code. No score is written."""


@dataclass
class Run:
    """What grading one notebook found beyond the verdicts: kept for the class report (``RUNS``)."""

    grader_failure: str | None = None  # why the grader could not run the notebook
    stopped: str | None = None  # why the notebook stopped before its end (a cell too long, too much memory)
    probe: dict | None = None  # what the kernel reported before the first cell


# By submission folder, in the process that graded it (nbgrader's API runs GradingExecute in its caller's process).
RUNS: dict[str, Run] = {}


def cell_name(nb: NotebookNode, index: int) -> str:
    """``cell 7`` or, for a cell with a grade id, ``cell 7 (`softmax`)``."""
    grade_id = conventions.grade_id(nb.cells[index])
    return f"cell {index + 1}" + (f" (`{grade_id}`)" if grade_id else "")


def withdraw_submission(meta: dict) -> None:
    """Remove the gradebook entry nbgrader made for this submission before grading it, when it holds no score.

    (nbgrader creates it, with empty grades, before the first preprocessor runs; ``nbgrader export``
    would show it as zero.) An entry with scores from an earlier run keeps them: nothing new was written.
    """
    if not meta.get("db_url"):
        return
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(meta["db_url"]) as gradebook:
        try:
            submission = gradebook.find_submission(meta["assignment"], meta["student"])
        except MissingEntry:
            return
        grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
        if all(grade.auto_score is None and grade.manual_score is None for grade in grades):
            gradebook.remove_submission(meta["assignment"], meta["student"])


def graded_check(cell: NotebookNode) -> tuple[str, str] | None:
    """(exercise, layer) for a graded test cell of one of the course's exercises."""
    return conventions.test_of(cell, EXERCISES)


def _student_code(nb: NotebookNode) -> list[tuple[int, str, str]]:
    """(cell index, grade_id or '', source) of every code cell the student could have written."""
    return [
        (index, conventions.grade_id(cell) or "", cell.source)
        for index, cell in enumerate(nb.cells)
        if conventions.is_students(cell)
    ]


class GradingExecute(Execute):
    """nbgrader's Execute step with prepared cases, a sandboxed kernel and verdicts reached outside it."""

    cell_timeout = Integer(300, help="seconds a cell may run before the kernel is stopped").tag(config=True)
    max_output_chars = Integer(200_000, help="printed characters kept per cell; the rest is dropped").tag(config=True)

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``max_output_chars`` of printed text per cell, so a flood cannot exhaust memory."""
        if msg["msg_type"] == "stream":
            used = self._printed.get(cell_index, 0)
            text = msg["content"].get("text", "")
            if used >= self.max_output_chars:
                return None
            self._printed[cell_index] = used + len(text)
            if used + len(text) > self.max_output_chars:
                msg["content"]["text"] = text[: self.max_output_chars - used] + "\n[output truncated by the grader]\n"
        return super().output(outs, msg, display_id, cell_index)

    def preprocess(self, nb: NotebookNode, resources=None, km=None):
        """Grade ``nb``, or raise GraderFailure (with no score left in the gradebook) when the grader cannot run it."""
        resources = resources or {}
        submission = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        exchange = protocol.create()
        run = RUNS[str(submission)] = Run()
        try:
            sandbox.check_available()
            if config.seed_source() == "public":
                self.log.warning(preflight.PUBLIC_SEED_WARNING)
            checks = {index: found for index, cell in enumerate(nb.cells) if (found := graded_check(cell))}
            plans = self._prepare(checks.values(), exchange)
            collected = self._execute(nb, resources, submission, exchange, checks, run)
            self._judge(nb, checks, plans, collected)
        except Exception as error:  # student code cannot raise here: whatever does is the grader's failure
            run.grader_failure = str(error) if isinstance(error, GraderFailure) else f"{type(error).__name__}: {error}"
            withdraw_submission(resources.get("nbgrader", {}))
            raise GraderFailure(
                f"The grader could not run this notebook, so it is not graded: {run.grader_failure}"
            ) from error
        finally:
            shutil.rmtree(exchange, ignore_errors=True)
        return nb, resources

    def _prepare(self, checks, exchange: Path) -> dict:
        """Plans per (exercise, layer), with only the cases' inputs written where the kernel can read them."""
        device, seed = config.device(), config.secret_seed()
        plans = {}
        for name, layer in set(checks):
            exercise = EXERCISES[name]
            plans[name, layer] = [
                visible_plan(exercise, device, dtype)
                if layer == "visible"
                else hidden_plan(exercise, device, dtype, seed)
                for dtype in exercise.dtypes
            ]
            protocol.write_cases(exchange, name, layer, plans[name, layer], device)
        return plans

    def _execute(self, nb, resources, submission: Path, exchange: Path, checks: dict, run: Run) -> dict:
        """Run the notebook; returns each test cell's results, or the reason it has none."""
        collected: dict = {}
        self.timeout = self.cell_timeout
        self.interrupt_on_timeout = False
        self.kernel_manager_class = sandbox.SandboxedKernelManager
        self.nb, self.resources = nb, resources
        km = sandbox.SandboxedKernelManager(
            kernel_name=self.kernel_name or "python3",
            transport="ipc",
            connection_file=str(exchange / protocol.CONNECTION),
            submission=str(submission),
            exchange=str(exchange),
        )
        self.km = km
        self.reset_execution_trackers()
        self._printed: dict = {}
        try:
            self.start_new_kernel()
            self.start_new_kernel_client()
        except Exception as error:  # the kernel did not start: nothing of the student's has run yet
            raise GraderFailure(preflight.kernel_did_not_start(error, submission, exchange)) from None
        with self.setup_kernel():  # (started above) stops the kernel when the notebook ends
            run.probe = self._probe(exchange)
            for index, cell in enumerate(nb.cells):
                if run.stopped:
                    if index in checks:
                        collected[index] = f"the checks did not run: {run.stopped}."
                    continue
                protocol.clear_results(exchange)
                try:
                    self.preprocess_cell(cell, resources, index)
                except CellTimeoutError:
                    run.stopped = (
                        f"{cell_name(nb, index)} ran longer than the time limit of {self.cell_timeout} s, "
                        "and the grader stopped it"
                    )
                except DeadKernelError:
                    run.stopped = (
                        f"{cell_name(nb, index)} used more than {sandbox.gib(sandbox.memory_limit())} of "
                        "memory, and the grader stopped it"
                        if km.memory_exceeded
                        else f"the Python process stopped in {cell_name(nb, index)} (os._exit, a crash, or a signal)"
                    )
                if index in checks:
                    name, layer = checks[index]
                    collected[index] = (
                        f"the checks did not run: {run.stopped}."
                        if run.stopped
                        else protocol.read_results(exchange, name, layer)
                    )
        return collected

    def _probe(self, exchange: Path) -> dict:
        """Before any student cell: can the kernel import what grading needs and write to the exchange?"""
        cell = NotebookNode(cell_type="code", source=protocol.PROBE, metadata={}, outputs=[])
        self.nb.cells.append(cell)  # nbclient keeps what it runs in the notebook: it goes again at once
        # The probe is part of starting the kernel, not a student's cell: it has the kernel's start-up limit, so
        # that a short cell limit is not spent importing torch (seconds on a busy machine, more on a cold GPU).
        self.timeout = self.startup_timeout
        try:
            self.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        except (CellTimeoutError, DeadKernelError) as error:
            raise GraderFailure(
                preflight.probe_stopped(
                    isinstance(error, CellTimeoutError), self.km.memory_exceeded, self.startup_timeout
                )
            ) from None
        finally:
            self.nb.cells.pop()
            self.timeout = self.cell_timeout
        found = protocol.read_probe(exchange)
        if found is None:
            errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs if o.get("output_type") == "error"]
            raise GraderFailure(preflight.probe_failed(errors[0] if errors else "it gave no answer"))
        if Path(found["autograder"]).resolve() != Path(__file__).resolve().parent:
            raise GraderFailure(preflight.probe_failed(f"it imports autograder from {found['autograder']}"))
        if config.device().type == "cuda" and not found["cuda"]:
            raise GraderFailure(preflight.no_gpu_in_kernel())
        return found

    def _judge(self, nb, checks: dict, plans: dict, collected: dict) -> None:
        findings = tampering.scan((index, source) for index, _, source in _student_code(nb))
        nb.metadata["autograder"] = {"tampering": [str(f) for f in findings]}  # whatever the student put there goes
        for index, (name, layer) in checks.items():
            cell = nb.cells[index]
            outcome = collected.get(index, "the checks did not run.")
            message = None
            if findings:
                message = (
                    f"Not graded: {findings[0]}, and student code may not touch the checking machinery. "
                    "Your instructor will review this submission."
                )
            elif used := scan_forbidden(_student_code(nb), EXERCISES[name], before=index):
                exercise = EXERCISES[name]
                why = f": {exercise.why_forbidden}" if exercise.why_forbidden else ""
                message = f"`{name}` uses {used}, which this exercise asks you not to use{why}."
            elif isinstance(outcome, str):
                message = outcome[0].upper() + outcome[1:]
            else:
                message = self._decide(name, layer, plans[name, layer], outcome)
            cell.outputs = [_failure(message)] if message else [_success(name, layer)]

    @staticmethod
    def _decide(name: str, layer: str, plans: list[Plan], handed: list) -> str | None:
        exercise = EXERCISES[name]
        if len(handed) != len(plans):
            return "The checks did not run completely."
        for plan, part in zip(plans, handed):
            results = [protocol.result_from_data(r) for r in part["results"]]
            if len(results) != len(plan.cases()):
                return "The checks did not run completely."
            message = decide(exercise, plan, results, hidden=(layer == "hidden"))
            if message:
                return message
        return None


def _failure(message: str) -> NotebookNode:
    return NotebookNode(
        output_type="error",
        ename="CheckFailure",
        evalue=message,
        traceback=[f"\x1b[0;31mCheckFailure\x1b[0m: {message}"],
    )


def _success(name: str, layer: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=f"\u2714 {name}: {layer} checks passed.\n")
