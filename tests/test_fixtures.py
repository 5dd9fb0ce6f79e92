"""The committed fixtures are what the reference solutions produce now, on any CPU.

float32 results are not bit-identical across machines (CPU kernels differ), so a stored
floating tensor is compared with a fresh one at the tolerance the checks use for its dtype
(``autograder.tolerance``): a fixture is stale when a check could answer differently with it,
never because another CPU rounded the last bits differently.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from autograder import CheckFailure, checks, fixtures, reference, serialize
from autograder.exercises import EXERCISES
from autograder.tolerance import tolerance


def difference(committed: Any, fresh: Any, where: str = "fixture") -> str | None:
    """Where ``committed`` and ``fresh`` first differ beyond the checks' tolerance, or None."""
    if isinstance(committed, torch.Tensor):
        if not isinstance(fresh, torch.Tensor):
            return f"{where}: a tensor became {type(fresh).__name__}"
        if committed.shape != fresh.shape or committed.dtype != fresh.dtype:
            return f"{where}: {committed.dtype} {tuple(committed.shape)} became {fresh.dtype} {tuple(fresh.shape)}"
        if not committed.is_floating_point():
            return None if torch.equal(committed, fresh) else f"{where}: integer values differ"
        rtol, atol = tolerance(committed.dtype)
        if torch.allclose(fresh.double(), committed.double(), rtol=rtol, atol=atol, equal_nan=True):
            return None
        worst = (fresh.double() - committed.double()).abs().nan_to_num(float("inf")).max().item()
        return f"{where}: values differ by up to {worst:.3g} (allowed for {committed.dtype}: {atol:g} + {rtol:g} * |value|)"
    if isinstance(committed, (list, tuple)):
        if type(committed) is not type(fresh) or len(committed) != len(fresh):
            return f"{where}: {type(committed).__name__} of {len(committed)} became {type(fresh).__name__} of {len(fresh) if isinstance(fresh, (list, tuple)) else '?'}"
        return next(
            (d for i, (a, b) in enumerate(zip(committed, fresh)) if (d := difference(a, b, f"{where}[{i}]"))), None
        )
    if isinstance(committed, dict):
        if not isinstance(fresh, dict) or committed.keys() != fresh.keys():
            keys = set(fresh.keys()) if isinstance(fresh, dict) else set()
            return f"{where}: keys {sorted(set(committed) ^ keys)} added or removed"
        return next(
            (d for key in committed if (d := difference(committed[key], fresh[key], f"{where}[{key!r}]"))), None
        )
    if isinstance(committed, float) and isinstance(fresh, float):
        return (
            None
            if abs(committed - fresh) <= 1e-12 + 1e-9 * abs(committed) or committed == fresh
            else f"{where}: {committed!r} became {fresh!r}"
        )
    return None if committed == fresh else f"{where}: {committed!r} became {fresh!r}"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_fixtures_are_up_to_date(name, tmp_path):
    exercise = EXERCISES[name]
    committed = fixtures.path_for(exercise)
    assert committed.is_file(), f"{committed} is missing: run `make fixtures`"
    fresh = fixtures.generate(exercise, folder=tmp_path)
    stale = difference(serialize.load(committed), serialize.load(fresh))
    assert stale is None, f"fixtures of {name} are stale ({stale}): run `make fixtures`"


# --- The staleness test itself: it forgives another CPU's rounding, never a real change ---------


def _floats(tree: Any, dtype: torch.dtype) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree] if tree.dtype == dtype and tree.numel() else []
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _floats(item, dtype)]
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in _floats(value, dtype)]
    return []


def _rounded_elsewhere(tensor: torch.Tensor, ulps: int = 4) -> None:
    """Move every finite value ``ulps`` steps of its dtype up or down, as another CPU's kernels might."""
    direction = torch.where(torch.arange(tensor.numel()).reshape(tensor.shape) % 2 == 0, float("inf"), float("-inf"))
    for _ in range(ulps):
        moved = torch.nextafter(tensor, direction.to(tensor.dtype))
        tensor.copy_(torch.where(torch.isfinite(tensor), moved, tensor))


@pytest.fixture(scope="module")
def layer_norm_records():
    """The committed fixture of the exercise whose float32 mistakes differ most across CPUs."""
    return serialize.load(fixtures.path_for(EXERCISES["layer_norm"]))


def test_another_cpus_float32_rounding_is_not_stale(layer_norm_records):
    elsewhere = copy.deepcopy(layer_norm_records)
    moved = _floats(elsewhere, torch.float32)
    assert moved, "the layer_norm fixture has no float32 values to perturb"
    for tensor in moved:
        _rounded_elsewhere(tensor)
    assert any(not torch.equal(a, b) for a, b in zip(moved, _floats(layer_norm_records, torch.float32)))
    assert difference(layer_norm_records, elsewhere) is None
    for tensor in _floats(elsewhere, torch.float64):
        _rounded_elsewhere(tensor)
    assert difference(layer_norm_records, elsewhere) is None


def _first_mistake(records):
    outputs = records[0]["mistakes"]["float32"]
    key = next(iter(outputs))
    return outputs, key


def test_a_changed_value_is_stale(layer_norm_records):
    changed = copy.deepcopy(layer_norm_records)
    outputs, key = _first_mistake(changed)
    outputs[key].view(-1)[0] += 1e-3
    assert "values differ" in difference(layer_norm_records, changed)
    expected = copy.deepcopy(layer_norm_records)
    expected[0]["expected"].view(-1)[0] *= 1 + 1e-6  # float64 results must agree far more closely
    assert "values differ" in difference(layer_norm_records, expected)


def test_a_changed_shape_or_dtype_is_stale(layer_norm_records):
    changed = copy.deepcopy(layer_norm_records)
    outputs, key = _first_mistake(changed)
    outputs[key] = outputs[key][..., :-1]
    assert "became" in difference(layer_norm_records, changed)
    outputs[key] = layer_norm_records[0]["mistakes"]["float32"][key].double()
    assert "became" in difference(layer_norm_records, changed)


def test_a_missing_mistake_or_case_is_stale(layer_norm_records):
    changed = copy.deepcopy(layer_norm_records)
    outputs, key = _first_mistake(changed)
    del outputs[key]
    assert key in difference(layer_norm_records, changed)
    assert "list of" in difference(layer_norm_records, layer_norm_records[:-1])


def test_changed_case_inputs_are_stale():
    records = serialize.load(fixtures.path_for(EXERCISES["encode"]))
    changed = copy.deepcopy(records)
    changed[0]["case"]["label"] = "another case"
    assert difference(records, changed) is not None


# --- A student's correct float32 code that rounds differently still passes the visible checks ---


def _nudged(obj: Any, units: float = 1.0) -> Any:
    """``obj`` with each floating value moved by a few units of its dtype's precision, differently at each
    position: what computing in another order does. Whole numbers (the 0 and 1 of a one-hot row, a
    count, an infinity) stay: any order of operations computes them exactly."""
    if isinstance(obj, torch.Tensor) and obj.is_floating_point():
        steps = (torch.arange(obj.numel(), device=obj.device) * 7919 % 9 - 4).reshape(obj.shape).to(obj.dtype)
        return torch.where(obj == obj.round(), obj, obj * (1 + units * steps * torch.finfo(obj.dtype).eps))
    if isinstance(obj, tuple):
        return tuple(_nudged(item, units) for item in obj)
    if isinstance(obj, list):
        return [_nudged(item, units) for item in obj]
    if isinstance(obj, dict):
        return {key: _nudged(value, units) for key, value in obj.items()}
    return obj


def _rounding_differently(impl, units: float = 1.0):
    """The reference ``impl`` (function or module class), with every output nudged by ``_nudged``."""
    if isinstance(impl, type) and issubclass(impl, torch.nn.Module):
        forward = lambda self, *a, **k: _nudged(impl.forward(self, *a, **k), units)  # noqa: E731
        nudged = type(impl.__name__, (impl,), {"forward": forward})
        nudged.__qualname__ = impl.__qualname__
        return nudged

    def function(*args, **kwargs):
        return _nudged(impl(*args, **kwargs), units)

    return function


@pytest.mark.parametrize("name", sorted(n for n, e in EXERCISES.items() if torch.float32 in e.dtypes))
def test_correct_code_that_rounds_differently_passes_the_visible_checks(name):
    exercise = EXERCISES[name]
    impl = getattr(reference.load(exercise.assignment), name)
    checks.check(name, _rounding_differently(impl), device=torch.device("cpu"))


@pytest.mark.parametrize("name", ["softmax", "layer_norm", "MultiHeadAttention"])
def test_an_error_beyond_float32_tolerance_still_fails(name):
    """The nudge above is small enough to be rounding, and the same nudge made large is caught."""
    impl = getattr(reference.load(EXERCISES[name].assignment), name)
    with pytest.raises(CheckFailure, match="wrong values"):
        checks.check(name, _rounding_differently(impl, units=2e4), device=torch.device("cpu"), dtypes=(torch.float32,))


def test_serialization_round_trips_nested_data(tmp_path):
    data = {"a": (torch.arange(3), [1, 2.5, None, "x", float("-inf")]), "b": torch.ones(2, 2).T}
    serialize.save(data, tmp_path / "f.safetensors")
    back = serialize.load(tmp_path / "f.safetensors")
    assert difference(back["a"][0], data["a"][0]) is None and back["a"][1][:4] == [1, 2.5, None, "x"]
    assert back["a"][1][4] == float("-inf") and difference(back["b"], data["b"].contiguous()) is None


def test_a_fixture_file_cannot_hold_code(tmp_path):
    class Sneaky:
        pass

    with pytest.raises(TypeError, match="cannot store"):
        serialize.save({"x": Sneaky()}, tmp_path / "f.safetensors")
