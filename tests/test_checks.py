"""The check engine on the reference solutions and on every catalogued wrong version."""

from __future__ import annotations

import pytest
import torch

from autograder import CheckFailure, check, check_hidden, reference
from autograder.exercises import EXERCISES

CPU = torch.device("cpu")
EXERCISE_NAMES = sorted(EXERCISES)
MISTAKES = [(name, mistake.key) for name in EXERCISE_NAMES for mistake in EXERCISES[name].mistakes]


def reference_of(name: str):
    exercise = EXERCISES[name]
    return getattr(reference.load(exercise.assignment), name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", EXERCISE_NAMES)
def test_reference_passes_visible_and_hidden_checks(name, dtype, capsys):
    exercise = EXERCISES[name]
    dtypes = (dtype,) if exercise.dtypes != (None,) else (None,)
    check(name, reference_of(name), device=CPU, dtypes=dtypes)
    check_hidden(name, reference_of(name), device=CPU, dtypes=dtypes)
    printed = capsys.readouterr().out
    assert f"{name}: visible checks passed" in printed and f"{name}: hidden checks passed" in printed


@pytest.mark.parametrize("name", EXERCISE_NAMES)
def test_every_exercise_keeps_a_catalogue_of_at_least_four_mistakes(name):
    mistakes = EXERCISES[name].mistakes
    assert len(mistakes) >= 4
    assert len({m.key for m in mistakes}) == len(mistakes)


@pytest.mark.parametrize("layer", [check, check_hidden], ids=["visible", "hidden"])
@pytest.mark.parametrize("name,key", MISTAKES, ids=[f"{n}-{k}" for n, k in MISTAKES])
def test_every_mistake_is_rejected_and_named(name, key, layer):
    exercise = EXERCISES[name]
    mistake = next(m for m in exercise.mistakes if m.key == key)
    wrong = mistake.build(reference.load(exercise.assignment))
    with pytest.raises(CheckFailure) as failure:
        layer(name, wrong, device=CPU)
    assert mistake.expected_text in str(failure.value)


def test_hidden_checks_depend_on_the_secret_seed(monkeypatch):
    """Two seeds give two different sets of hidden inputs: a student cannot hard-code them."""
    from autograder.exercises import get

    exercise = get("scaled_dot_product_attention")
    first = exercise.make_cases(torch.Generator().manual_seed(1), hidden=True)
    second = exercise.make_cases(torch.Generator().manual_seed(2), hidden=True)
    assert not torch.equal(first[0].args[0], second[0].args[0])
    monkeypatch.setenv("AUTOGRADER_SEED", "12345")
    from autograder import config

    assert config.secret_seed() == 12345
    monkeypatch.setenv("AUTOGRADER_SEED", "not a number")
    with pytest.raises(ValueError, match="must be an integer"):
        config.secret_seed()


def test_hidden_feedback_never_shows_expected_values():
    """A wrong value on a hidden test reports the size of the error, not the numbers."""
    with pytest.raises(CheckFailure) as failure:
        check_hidden("softmax", lambda x, dim=-1: reference_of("softmax")(x, dim) + 0.25, device=CPU)
    message = str(failure.value)
    assert "On a hidden test" in message and "largest difference is 0.25" in message
    assert "expected" not in message.split("(allowed")[0]
    assert "got " not in message
