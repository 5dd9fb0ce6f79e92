"""A check given bad input fails with one clear sentence, never a traceback from inside the autograder."""

from __future__ import annotations

import pytest
import torch

from autograder import CheckFailure, check, check_hidden, reference

CPU = torch.device("cpu")
ref = reference.load("ch04_scaled_dot_product")


def failure_of(*args, layer=check, **kwargs) -> str:
    with pytest.raises(CheckFailure) as failure:
        layer(*args, device=CPU, **kwargs)
    message = str(failure.value)
    assert "Traceback" not in message and 'File "' not in message and "\n" not in message
    return message


def raises_value_error(x, dim=-1):
    raise ValueError("shapes do not line up")


def not_written(x, dim=-1):
    raise NotImplementedError()


@pytest.mark.parametrize("layer", [check, check_hidden], ids=["visible", "hidden"])
@pytest.mark.parametrize(
    "impl,expected",
    [
        (lambda x, dim=-1: ref.softmax(x, dim).T, "should have shape"),
        (
            lambda x, dim=-1: ref.softmax(x, dim).float() if x.dtype == torch.float64 else ref.softmax(x, dim).double(),
            "should have dtype",
        ),
        (lambda x, dim=-1: ref.softmax(x, dim).to("meta"), "should be on the cpu device"),
        (lambda x, dim=-1: None, "returned None: did you forget the `return` statement?"),
        (lambda x, dim=-1: ref.softmax(x, dim).tolist(), "should be a float"),
        (lambda x, dim=-1: torch.full_like(x, float("nan")), "contains NaN"),
        (
            raises_value_error,
            ": shapes do not line up. In your code, "
            f"line {raises_value_error.__code__.co_firstlineno + 1}: "  # the line of its `raise`
            '`raise ValueError("shapes do not line up")`.',
        ),
        (not_written, "is not written yet"),
    ],
    ids=["shape", "dtype", "device", "none", "list", "nan", "exception", "not-implemented"],
)
def test_wrong_outputs_get_one_sentence(impl, expected, layer):
    assert expected in failure_of("softmax", impl, layer=layer)


def test_a_tuple_exercise_returning_one_tensor():
    message = failure_of("scaled_dot_product_attention", lambda q, k, v, mask=None: q)
    assert "should return a tuple (out, weights)" in message


def test_a_missing_function_or_unknown_exercise():
    assert "Run the cell that defines `softmax` first" in failure_of("softmax", None)
    assert "There is no exercise named 'sofmax'" in failure_of("sofmax", ref.softmax)


def test_a_module_with_wrong_attributes():
    class Renamed(torch.nn.Module):
        def __init__(self, d_model, d_k):
            super().__init__()
            self.query = torch.nn.Linear(d_model, d_k, bias=False)

        def forward(self, x, mask=None):
            return x, x

    message = failure_of("SelfAttention", Renamed)
    assert "missing W_k.weight (4, 4), W_q.weight (4, 4), W_v.weight (4, 4); unexpected query.weight (4, 4)" in message


def test_a_module_class_that_is_not_a_module():
    assert "should create a torch.nn.Module" in failure_of("SelfAttention", lambda d_model, d_k: object())
