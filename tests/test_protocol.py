"""The grading exchange (autograder/protocol.py): what one side writes, the other reads back, and nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from autograder import protocol
from autograder.checks import visible_plan
from autograder.exercises import EXERCISES
from autograder.spec import Result

CPU = torch.device("cpu")


@pytest.fixture
def exchange():
    folder = protocol.create()
    yield folder
    shutil.rmtree(folder)


def test_a_fresh_exchange_has_its_folders_and_is_named_as_the_tampering_scan_knows(exchange):
    assert exchange.name.startswith(protocol.PREFIX)
    assert sorted(p.name for p in exchange.iterdir()) == [protocol.CASES, protocol.RESULTS]


def test_the_kernel_reads_the_cases_the_grader_wrote(exchange):
    exercise = EXERCISES["softmax"]
    plans = [visible_plan(exercise, CPU, dtype) for dtype in exercise.dtypes]
    protocol.write_cases(exchange, "softmax", "visible", plans, CPU)

    read = protocol.read_cases(exchange, "softmax", "visible")
    assert [dtype for dtype, _, _ in read] == [str(p.dtype).removeprefix("torch.") for p in plans]
    for (_, device, cases), plan in zip(read, plans):
        assert device == CPU
        assert [c.label for c in cases] == [c.label for c in plan.cases()]
        for got, sent in zip(cases, plan.cases()):
            assert all(torch.equal(a, b) for a, b in zip(got.args, sent.args) if isinstance(b, torch.Tensor))
    assert not list((exchange / protocol.RESULTS).iterdir())  # expected outputs never go into the exchange


def test_results_go_back_as_written_and_are_cleared_before_the_next_cell(exchange):
    exercise = EXERCISES["softmax"]
    result = Result(output=torch.ones(2, 3), error=None, forbidden=["torch.softmax"], warnings=["UserWarning: w"])
    protocol.write_results(exchange, "softmax", "hidden", [("float32", [protocol.result_as_data(exercise, result)])])

    (part,) = protocol.read_results(exchange, "softmax", "hidden")
    assert part["dtype"] == "float32"
    back = protocol.result_from_data(part["results"][0])
    assert torch.equal(back.output, result.output)
    assert (back.error, back.forbidden, back.warnings) == (None, ["torch.softmax"], ["UserWarning: w"])

    protocol.clear_results(exchange)
    assert protocol.read_results(exchange, "softmax", "hidden") == (
        "the checks did not run: the test cell did not reach them."
    )


def test_results_the_notebook_spoiled_are_not_read(exchange):
    (exchange / protocol.RESULTS / "softmax.visible.safetensors").write_bytes(b"not a safetensors file")
    assert protocol.read_results(exchange, "softmax", "visible") == (
        "the checks' results could not be read: something in the notebook changed them."
    )


def test_an_output_that_cannot_be_stored_becomes_the_error_that_says_so():
    data = protocol.result_as_data(EXERCISES["softmax"], Result(output=object()))
    assert data["output"] is None
    assert data["error"] == (
        "`softmax` returned an object, which the checks cannot read: "
        "return tensors, numbers, strings, lists, tuples or dicts."
    )


def test_the_kernel_is_in_grading_mode_only_with_an_exchange(monkeypatch, exchange):
    monkeypatch.delenv(protocol.ENV, raising=False)
    assert protocol.active() is None
    monkeypatch.setenv(protocol.ENV, str(exchange))
    assert protocol.active() == exchange


def test_the_probe_answers_once(exchange):
    assert protocol.read_probe(exchange) is None
    env = {"PATH": "", protocol.ENV: str(exchange), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", protocol.PROBE], env=env, check=True, timeout=300)

    found = protocol.read_probe(exchange)
    assert found["python"] == sys.executable and found["torch"] == torch.__version__
    assert found["autograder"] == str(ROOT / "autograder") and found["cases"] == []
    assert protocol.read_probe(exchange) is None  # read once: a later cell cannot leave an answer for it
