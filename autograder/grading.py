"""nbgrader's Execute step, made trustworthy: the verdict is reached where student code cannot reach it.

``GradingExecute`` replaces nbgrader's ``Execute`` in ``nbgrader_config.py``, so an
instructor still runs stock ``nbgrader autograde``. For each notebook it:

1. prepares, in the grader's process, the cases of every graded check (visible cases
   from the fixtures, hidden cases from the reference and the secret seed) and writes
   only their *inputs* to an exchange folder;
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
import tempfile
from pathlib import Path
from typing import Optional

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from . import config, sandbox, serialize, tampering
from .checks import hidden_plan, result_from_data, visible_plan
from .exercises import EXERCISES
from .forbidden import scan_forbidden
from .verdict import Plan, decide, dtype_name

LAYERS = {"": "visible", "_hidden": "hidden"}


def graded_check(cell: NotebookNode) -> Optional[tuple[str, str]]:
    """(exercise, layer) for a graded test cell named test_<exercise> or test_<exercise>_hidden."""
    meta = cell.metadata.get("nbgrader", {})
    grade_id = meta.get("grade_id", "")
    if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution") or not grade_id.startswith("test_"):
        return None
    name = grade_id.removeprefix("test_")
    if name in EXERCISES:
        return name, "visible"
    if name.endswith("_hidden") and name.removesuffix("_hidden") in EXERCISES:
        return name.removesuffix("_hidden"), "hidden"
    return None


def _student_code(nb: NotebookNode) -> list[tuple[int, str, str]]:
    """(cell index, grade_id or '', source) of every code cell the student could have written."""
    cells = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not (meta.get("locked") or (meta.get("grade") and not meta.get("solution"))):
            cells.append((index, meta.get("grade_id", ""), cell.source))
    return cells


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
        sandbox.check_available()
        submission = Path((resources or {}).get("metadata", {}).get("path") or ".").resolve()
        exchange = Path(tempfile.mkdtemp(prefix="autograder-exchange-"))
        try:
            (exchange / "cases").mkdir()
            (exchange / "results").mkdir()
            checks = {index: found for index, cell in enumerate(nb.cells) if (found := graded_check(cell))}
            plans = self._prepare(checks.values(), exchange)
            collected = self._execute(nb, resources, submission, exchange, checks)
            self._judge(nb, checks, plans, collected)
        finally:
            shutil.rmtree(exchange, ignore_errors=True)
        return nb, resources

    def _prepare(self, checks, exchange: Path) -> dict:
        """Plans per (exercise, layer), with only the cases' inputs written where the kernel can read them."""
        device, seed = config.device(), config.secret_seed()
        plans = {}
        for name, layer in set(checks):
            exercise = EXERCISES[name]
            plans[name, layer] = [visible_plan(exercise, device, dtype) if layer == "visible" else
                                  hidden_plan(exercise, device, dtype, seed) for dtype in exercise.dtypes]
            serialize.save([{"dtype": dtype_name(p.dtype) if p.dtype else None, "device": device.type,
                             "cases": [c.as_data() for c in p.cases()]} for p in plans[name, layer]],
                           exchange / "cases" / f"{name}.{layer}.safetensors")
        return plans

    def _execute(self, nb, resources, submission: Path, exchange: Path, checks: dict) -> dict:
        """Run the notebook; returns each test cell's results, or the reason it has none."""
        collected: dict = {}
        self.timeout = self.cell_timeout
        self.interrupt_on_timeout = False
        self.kernel_manager_class = sandbox.SandboxedKernelManager
        self.nb, self.resources = nb, resources
        km = sandbox.SandboxedKernelManager(kernel_name=self.kernel_name or "python3", transport="ipc",
                                            connection_file=str(exchange / "kernel.json"),
                                            submission=str(submission), exchange=str(exchange))
        self.km = km
        self.reset_execution_trackers()
        self._printed: dict = {}
        stopped: Optional[str] = None
        with self.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if stopped:
                    if index in checks:
                        collected[index] = stopped
                    continue
                for old in (exchange / "results").iterdir():
                    old.unlink()
                try:
                    self.preprocess_cell(cell, resources, index)
                except CellTimeoutError:
                    stopped = f"the checks did not run: cell {index + 1} ran longer than {self.cell_timeout} s."
                except DeadKernelError:
                    stopped = f"the checks did not run: the Python process stopped in cell {index + 1} (os._exit, a crash, or too much memory)."
                if index in checks:
                    name, layer = checks[index]
                    produced = exchange / "results" / f"{name}.{layer}.safetensors"
                    collected[index] = stopped or (serialize.load(produced) if produced.is_file() else
                                                   "the checks did not run: the test cell did not reach them.")
        return collected

    def _judge(self, nb, checks: dict, plans: dict, collected: dict) -> None:
        findings = tampering.scan((index, source) for index, _, source in _student_code(nb))
        nb.metadata["autograder"] = {"tampering": [str(f) for f in findings]}  # whatever the student put there goes
        for index, (name, layer) in checks.items():
            cell = nb.cells[index]
            outcome = collected.get(index, "the checks did not run.")
            message = None
            if findings:
                message = (f"Not graded: {findings[0]}, and student code may not touch the checking machinery. "
                           "Your instructor will review this submission.")
            elif (used := scan_forbidden(_student_code(nb), EXERCISES[name], before=index)):
                exercise = EXERCISES[name]
                why = f": {exercise.why_forbidden}" if exercise.why_forbidden else ""
                message = f"`{name}` uses {used}, which this exercise asks you not to use{why}."
            elif isinstance(outcome, str):
                message = outcome[0].upper() + outcome[1:]
            else:
                message = self._decide(name, layer, plans[name, layer], outcome)
            cell.outputs = [_failure(message)] if message else [_success(name, layer)]

    @staticmethod
    def _decide(name: str, layer: str, plans: list[Plan], handed: list) -> Optional[str]:
        exercise = EXERCISES[name]
        if len(handed) != len(plans):
            return "The checks did not run completely."
        for plan, part in zip(plans, handed):
            results = [result_from_data(r) for r in part["results"]]
            if len(results) != len(plan.cases()):
                return "The checks did not run completely."
            message = decide(exercise, plan, results, hidden=(layer == "hidden"))
            if message:
                return message
        return None


def _failure(message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename="CheckFailure", evalue=message,
                        traceback=[f"\x1b[0;31mCheckFailure\x1b[0m: {message}"])


def _success(name: str, layer: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=f"\u2714 {name}: {layer} checks passed.\n")

