"""The exercise engine's own rules: chapters stand alone, names are unique, calling strategies and the shared
mistake helpers do what their declarations say."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from autograder import cases
from autograder.calling import FUNCTION, MODULE, Bound, Harness, Module
from autograder.errors import CheckFailure
from autograder.exercises import ASSIGNMENTS, EXERCISES
from autograder.spec import REGISTERED, Case, Exercise

CHAPTERS = Path(__file__).resolve().parents[1] / "autograder" / "exercises"


def imported_chapters(source: str) -> list[str]:
    """The chapter modules (``chNN_...``) that ``source`` imports, however it spells the import."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module.split(".")[-1]] + [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [part for alias in node.names for part in alias.name.split(".")]
        else:
            continue
        found += [name for name in names if name in ASSIGNMENTS]
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_chapter_module_imports_another(assignment):
    source = (CHAPTERS / f"{assignment}.py").read_text()
    assert imported_chapters(source) == [], f"{assignment} imports {imported_chapters(source)}: share through cases.py"


@pytest.mark.parametrize(
    "source",
    [
        "from .ch09_encoder import attention_state",
        "from autograder.exercises.ch11_decoding import StepFunction",
        "from . import ch11_decoding",
        "import autograder.exercises.ch09_encoder as encoder",
    ],
)
def test_the_import_scan_sees_every_spelling_of_a_chapter_import(source):
    assert imported_chapters(source)


def test_the_import_scan_lets_shared_modules_through():
    assert imported_chapters("from ..cases import randn\nfrom .. import components\nimport torch") == []


def test_a_second_exercise_of_the_same_name_is_refused_in_one_sentence():
    with pytest.raises(ValueError) as raised:
        Exercise("softmax", "ch99_elsewhere")
    message = str(raised.value)
    assert "Two exercises are named 'softmax'" in message and "ch04_scaled_dot_product" in message
    assert "ch99_elsewhere" in message and "\n" not in message and message.count(". ") == 0
    assert REGISTERED["softmax"] is EXERCISES["softmax"]


def test_every_registered_exercise_is_collected_once():
    assert set(EXERCISES) == set(REGISTERED) and len(EXERCISES) == len(REGISTERED)


def test_exercises_declare_their_calling_strategy():
    assert EXERCISES["softmax"].calling is FUNCTION and not EXERCISES["softmax"].module
    assert EXERCISES["SelfAttention"].calling is MODULE and EXERCISES["SelfAttention"].module
    assert isinstance(EXERCISES["greedy_decode"].calling, Bound) and not EXERCISES["greedy_decode"].module
    assert isinstance(EXERCISES["KVCache"].calling, Harness) and EXERCISES["KVCache"].module
    assert not EXERCISES["tiled_attention"].module
    assert isinstance(EXERCISES["SublayerConnection"].calling, Module)


class Doubling(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.scale


def test_the_module_strategy_builds_moves_sets_the_mode_and_loads_the_weights():
    case = Case("x", (torch.ones(3),), init=(3,), state={"scale": torch.full((3,), 2.0)}, training=False)
    model = MODULE.prepare("Doubling", Doubling, case, torch.device("cpu"), torch.float64)
    assert not model.training and model.scale.dtype == torch.float64
    assert torch.equal(model(torch.ones(3, dtype=torch.float64)), torch.full((3,), 2.0, dtype=torch.float64))
    assert [name for name, _ in MODULE.parameters(model)] == ["scale"]


def test_the_module_strategy_says_when_the_class_makes_no_module():
    with pytest.raises(CheckFailure, match=r"`Doubling\(...\)` should create a torch.nn.Module, but it made int"):
        MODULE.prepare("Doubling", lambda d: 3, Case("x", init=(3,)), torch.device("cpu"), None)


def test_a_wrapped_module_is_called_through_its_adapter():
    strategy = Module(wrap=lambda model: nn.Sequential(model, nn.Identity()))
    model = strategy.prepare("Doubling", Doubling, Case("x", init=(2,)), torch.device("cpu"), None)
    assert isinstance(model, nn.Sequential) and [name for name, _ in strategy.parameters(model)] == ["0.scale"]


def test_the_bound_strategy_builds_the_arguments_at_call_time():
    calls = []
    strategy = Bound(lambda impl, device, seed: impl(torch.Generator().manual_seed(seed), device))
    target = strategy.prepare(
        "f", lambda generator, device: calls.append(device) or generator.initial_seed(), None, torch.device("cpu"), None
    )
    assert target(5) == 5 and calls == [torch.device("cpu")] and strategy.parameters(target) == []


def test_the_harness_strategy_builds_the_checks_module_around_the_students_code():
    class Twice(nn.Module):
        def __init__(self, impl, d):
            super().__init__()
            self.impl, self.inner = impl, Doubling(d)

        def forward(self, x):
            return self.impl(self.inner(x))

    strategy = Harness(Twice, weights_of="inner")
    case = Case("x", init=(2,), state={"scale": torch.full((2,), 3.0)})
    model = strategy.prepare("f", lambda h: h + 1, case, torch.device("cpu"), torch.float64)
    assert torch.equal(model(torch.ones(2, dtype=torch.float64)), torch.full((2,), 4.0, dtype=torch.float64))
    assert strategy.kind == "function" and Harness(Twice, kind="class").kind == "class"


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.flag, self.weight = True, nn.Parameter(torch.ones(2))

    def forward(self, x, mask=None):
        return x * self.weight * (2 if self.flag else 1) + (0 if mask is None else 10)


def test_with_attributes_changes_them_for_the_call_only():
    layer = cases.with_attributes(Layer, lambda self: {"flag": False})()
    assert torch.equal(layer(torch.ones(2)), torch.ones(2)) and layer.flag is True


def test_with_parameters_replaces_values_for_the_call_only():
    layer = cases.with_parameters(Layer, lambda params, model: {"weight": params["weight"] * 3})()
    assert torch.equal(layer(torch.ones(2)), torch.full((2,), 6.0)) and torch.equal(layer.weight.data, torch.ones(2))


def test_ignoring_drops_an_argument_given_by_position_or_by_name():
    layer = cases.ignoring(Layer, "mask")()
    for call in (lambda: layer(torch.ones(2), 1), lambda: layer(torch.ones(2), mask=1)):
        assert torch.equal(call(), torch.full((2,), 2.0))


def test_with_forward_and_with_output_see_the_right_forward_and_its_arguments():
    assert torch.equal(cases.with_forward(Layer, lambda self, right, x: right(-x))()(torch.ones(2)), -2 * torch.ones(2))
    assert torch.equal(cases.with_output(Layer, lambda self, out, x: out - x)()(torch.ones(2)), torch.ones(2))


def test_transposed_is_non_contiguous_and_draws_what_randn_draws():
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = cases.transposed(a, 2, 3, 4)
    assert x.shape == (2, 3, 4) and not x.is_contiguous()
    assert torch.equal(x, cases.randn(b, 2, 4, 3).transpose(-1, -2))


def test_a_shared_mistake_keeps_its_key_and_builds_on_the_reference():
    keys = [mistake.key for mistake in EXERCISES["EncoderLayer"].mistakes]
    assert {"always_post_norm", "dropout_in_eval", "lent_component"} <= set(keys)
    lent = next(m for m in EXERCISES["EncoderLayer"].mistakes if m.key == "lent_component")
    assert lent.expected_text == "uses autograder.components.layers.EncoderLayer"


def test_raises_judges_a_missing_error_and_another_error():
    [case], judge = cases.raises(Case("x"), "ValueError", "should raise", "For x, f")
    assert case.expect_error

    class Result:
        def __init__(self, error):
            self.error = error

    assert judge([Result(None)], None) == "should raise"
    assert (
        judge([Result("`f` raised TypeError")], None)
        == "For x, f should raise ValueError. Instead: `f` raised TypeError"
    )
    assert judge([Result("`f` raised ValueError when called")], None) is None


def test_code_that_changes_a_mask_in_place_does_not_change_the_next_checks_cases():
    from autograder import checks, reference

    ch04 = reference.load("ch04_scaled_dot_product")

    def fills_the_mask(q, k, v, mask=None):
        out = ch04.scaled_dot_product_attention(q, k, v, mask)
        if mask is not None:
            mask.fill_(True)
        return out

    with pytest.raises(CheckFailure, match="changed its argument `mask` in place"):
        checks.check("scaled_dot_product_attention", fills_the_mask, device="cpu")
    checks.check("scaled_dot_product_attention", ch04.scaled_dot_product_attention, device="cpu")


@pytest.fixture
def throwaway_exercise():
    """An exercise made for one test, taken out of the course's registry afterwards."""
    exercise = Exercise("throwaway_property_exercise", "ch99_throwaway")
    yield exercise
    del REGISTERED[exercise.name]


def test_a_property_registers_as_a_decorator_or_in_one_statement_in_order(throwaway_exercise):
    def probe(g):
        return [Case("x")], lambda results, dtype: None

    assert throwaway_exercise.prop("first")(probe) is probe
    assert throwaway_exercise.prop("second", probe) is probe
    assert [(p.description, p.probe) for p in throwaway_exercise.properties] == [("first", probe), ("second", probe)]


class Ran:
    """What the runner hands a judge, reduced to the output."""

    def __init__(self, output):
        self.output = output


def test_output_judge_says_the_expected_shape_before_judging():
    @cases.output_judge((2, 3), "f(x) with x of shape (2, 3)")
    def judge(out, dtype):
        return None if bool((out >= 0).all()) else "negative"

    assert (
        judge([Ran(torch.ones(3, 2))], None)
        == "f(x) with x of shape (2, 3) should have shape (2, 3), got a float32 tensor of shape (3, 2) on cpu."
    )
    assert judge([Ran(None)], None).startswith("f(x) with x of shape (2, 3) should have shape (2, 3), got ")
    assert judge([Ran(-torch.ones(2, 3))], None) == "negative"
    assert judge([Ran(torch.ones(2, 3))], None) is None


def test_outputs_agree_fails_on_another_value_another_shape_or_no_tensor():
    _, judge = cases.outputs_agree([Case("a"), Case("b")], "changed", lambda out: out[:2])
    x = torch.arange(3.0)
    assert judge([Ran(x), Ran(torch.cat([x[:2], torch.tensor([9.0])]))], torch.float32) is None
    assert judge([Ran(x), Ran(x + 1)], torch.float32) == "changed"
    _, whole = cases.outputs_agree([Case("a"), Case("b")], "changed")
    assert whole([Ran(x), Ran(x[:2])], torch.float32) == "changed"
    assert whole([Ran(x), Ran((x,))], torch.float32) == "changed"
    assert whole([Ran(x), Ran(x.clone())], torch.float32) is None


def test_matches_builtin_formats_its_sentence_with_the_case_and_the_largest_difference():
    case = Case("x", init=(8, True))
    _, judge = cases.matches_builtin(
        [case], lambda c: torch.zeros(2, dtype=torch.float64), "With norm_first={case.init[1]}: off by {error:.3g}."
    )
    assert judge([Ran(torch.zeros(2))], torch.float32) is None
    assert judge([Ran(torch.tensor([0.0, 0.25]))], torch.float32) == "With norm_first=True: off by 0.25."


class Attention(nn.Module):
    """A single-head attention module with W_q, W_k, W_v as the chapters 4 and 5 exercises have them."""

    def __init__(self):
        super().__init__()
        self.W_q, self.W_k, self.W_v = (nn.Linear(2, 2, bias=False) for _ in range(3))
        for layer, value in zip((self.W_q, self.W_k, self.W_v), (1.0, 2.0, 3.0)):
            nn.init.constant_(layer.weight, value)

    def forward(self, x):
        return self.W_q(x), self.W_k(x), self.W_v(x)


def test_the_shared_attention_mistakes_change_only_what_they_name(throwaway_exercise):
    ref = type("Reference", (), {throwaway_exercise.name: Attention})  # they build on getattr(ref, exercise.name)
    cases.scores_not_scaled(throwaway_exercise, "not scaled")
    cases.projection_swapped(throwaway_exercise, "W_k", "W_q")
    cases.weights_not_transposed(throwaway_exercise, "not transposed")
    unscaled, swapped, untransposed = throwaway_exercise.mistakes
    assert [(m.key, m.message) for m in throwaway_exercise.mistakes] == [
        ("no_scaling", "not scaled"),
        ("keys_from_w_q", "the keys are made with W_q instead of W_k."),
        ("transposed_weights", "not transposed"),
    ]
    x = torch.tensor([[1.0, 0.0]])
    q, k, v = unscaled.build(ref)()(x)
    assert torch.allclose(q, torch.full((1, 2), 2**0.5)) and torch.equal(k, 2 * torch.ones(1, 2))
    q, k, v = swapped.build(ref)()(x)
    assert torch.equal(k, q) and torch.equal(v, 3 * torch.ones(1, 2))
    model = untransposed.build(ref)()
    with torch.no_grad():
        model.W_q.weight.copy_(torch.tensor([[1.0, 5.0], [0.0, 1.0]]))
    assert torch.equal(model(x)[0], torch.tensor([[1.0, 5.0]]))  # x @ W, where nn.Linear computes x @ W.T
    assert torch.equal(model.W_q(x), torch.tensor([[1.0, 0.0]]))  # restored after the call
