"""The grading exchange: how the grader and the sandboxed kernel hand each other cases and results.

At grading, the grader (``autograder.grading``, in nbgrader's process) and the student's
kernel (in the sandbox) share nothing but one fresh folder, the *exchange*, named to the
kernel by the environment variable ``AUTOGRADER_EXCHANGE``. Its layout::

    cases/<exercise>.<layer>.safetensors    the inputs of every case, by the grader, before the kernel starts
                                            (read-only inside the sandbox)
    results/<exercise>.<layer>.safetensors  what the student's code returned, by ``check``/``check_hidden``
                                            in the kernel; emptied by the grader before each cell
    probe.json                              the kernel's answer to ``PROBE``, run before the first cell
    kernel.json                             the kernel's connection file (its sockets are beside it)

``<layer>`` is ``visible`` or ``hidden``. Every file is plain data (``autograder.serialize``:
a JSON tree and tensors, never a pickle), so reading what the kernel wrote cannot run its code:

- a cases file is a list with one plan per dtype: ``{"dtype": "float32" or None, "device": "cpu",
  "cases": [Case.as_data(), ...]}``; expected outputs never leave the grader;
- a results file is the same list with ``"results"`` instead of ``"cases"``: one
  ``result_as_data`` per case, in the cases' order.

In the kernel, a test cell's ``check`` finds ``AUTOGRADER_EXCHANGE`` set, runs the cases of the
cases file and writes the results file; it decides nothing. The grader reads the results file
as soon as the cell ends and reaches the verdict (``autograder.verdict``).

The names of the layout import nothing; torch and the serializer are imported on use, so that
the sandbox, the tampering scan and ``progress`` can read the layout without importing torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .spec import Case, Exercise, Result

ENV = "AUTOGRADER_EXCHANGE"
PREFIX = "autograder-exchange-"  # the exchange folder's name starts so (the tampering scan looks for it)
CASES, RESULTS, PROBE_ANSWER, CONNECTION = "cases", "results", "probe.json", "kernel.json"

# Run in the kernel before any student cell, in a namespace of its own: it can import what grading needs,
# and it can write to the exchange folder and read the cases there.
PROBE = f"""def _autograder_probe():
    import json, os, sys
    import torch, autograder, autograder.checks
    exchange = os.environ["{ENV}"]
    found = {{"python": sys.executable, "torch": torch.__version__, "autograder": os.path.dirname(autograder.__file__),
             "cuda": torch.cuda.is_available(), "cases": sorted(os.listdir(os.path.join(exchange, "{CASES}")))}}
    with open(os.path.join(exchange, "{PROBE_ANSWER}"), "w") as answer:
        json.dump(found, answer)
_autograder_probe()
del _autograder_probe
"""


def create() -> Path:
    """A fresh, empty exchange folder with its ``cases/`` and ``results/``; the caller removes it."""
    exchange = Path(tempfile.mkdtemp(prefix=PREFIX))
    (exchange / CASES).mkdir()
    (exchange / RESULTS).mkdir()
    return exchange


def active() -> Path | None:
    """In the kernel: the exchange folder of the grading under way, or None outside grading."""
    return Path(os.environ[ENV]) if os.environ.get(ENV) else None


def _file(exchange: Path, folder: str, name: str, layer: str) -> Path:
    return exchange / folder / f"{name}.{layer}.safetensors"


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


# ----------------------------------------------------------------------------- the grader's side


def write_cases(exchange: Path, name: str, layer: str, plans: list, device: torch.device) -> None:
    """The inputs of ``plans`` (one ``verdict.Plan`` per dtype), where the kernel can read them."""
    from . import serialize

    serialize.save(
        [
            {"dtype": _dtype_name(plan.dtype), "device": device.type, "cases": [c.as_data() for c in plan.cases()]}
            for plan in plans
        ],
        _file(exchange, CASES, name, layer),
    )


def clear_results(exchange: Path) -> None:
    """Before each cell: no results file of an earlier cell can pass for this cell's."""
    for old in (exchange / RESULTS).iterdir():
        old.unlink()


def read_results(exchange: Path, name: str, layer: str) -> list | str:
    """A test cell's results as handed back, or why there are none (the student's kernel wrote them)."""
    produced = _file(exchange, RESULTS, name, layer)
    if not produced.is_file():
        return "the checks did not run: the test cell did not reach them."
    from . import serialize

    try:
        return serialize.load(produced)
    except Exception:  # a file the notebook's code overwrote or cut short
        return "the checks' results could not be read: something in the notebook changed them."


def read_probe(exchange: Path) -> dict | None:
    """What the kernel said in answer to ``PROBE`` (the answer is removed), or None when it wrote nothing."""
    answer = exchange / PROBE_ANSWER
    if not answer.is_file():
        return None
    found = json.loads(answer.read_text())
    answer.unlink()
    return found


def result_from_data(data: dict) -> Result:
    from .spec import Result

    return Result(
        output=data["output"],
        grads=data["grads"],
        structure=data["structure"],
        error=data["error"],
        forbidden=list(data["forbidden"]),
        warnings=list(data["warnings"]),
    )


# ----------------------------------------------------------------------------- the kernel's side


def read_cases(exchange: Path, name: str, layer: str) -> list[tuple[str | None, torch.device, list[Case]]]:
    """(dtype name, device, cases) of each plan the grader prepared for exercise ``name``'s ``layer``."""
    import torch

    from . import serialize
    from .spec import Case

    plans = serialize.load(_file(exchange, CASES, name, layer))
    return [(p["dtype"], torch.device(p["device"]), [Case.from_data(c) for c in p["cases"]]) for p in plans]


def result_as_data(exercise: Exercise, result: Result) -> dict:
    """A result as plain data; an output that cannot be stored becomes the error that says so."""
    from . import serialize
    from .compare import describe

    data = {
        "output": result.output,
        "grads": result.grads,
        "structure": result.structure,
        "error": result.error,
        "forbidden": result.forbidden,
        "warnings": result.warnings,
    }
    try:
        serialize.pack(data, {})
    except TypeError:
        data.update(
            output=None,
            grads=None,
            error=f"`{exercise.name}` returned {describe(result.output)}, which the checks cannot read: "
            "return tensors, numbers, strings, lists, tuples or dicts.",
        )
    return data


def write_results(exchange: Path, name: str, layer: str, handed: list[tuple[str | None, list[dict]]]) -> None:
    """(dtype name, ``result_as_data`` of each case) of each plan, in the order the plans came."""
    from . import serialize

    serialize.save(
        [{"dtype": dtype, "results": results} for dtype, results in handed], _file(exchange, RESULTS, name, layer)
    )
