"""Compare what the student's code returned with what was expected, and say how they differ."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .tolerance import tolerance

GENERIC_INFINITY_ADVICE = "Look for an exp() that overflows, a division by zero, or -inf in every entry of a row."
KEEP_DTYPE = "Keep the dtype of the inputs: avoid creating new tensors without dtype=."


@dataclass(frozen=True)
class Hints:
    """What a mismatch means for one exercise and case; it completes the engine's sentences.

    ``dtype``: the exercise's own sentence after a wrong dtype (what the dtype must be and why);
    without one, a floating output of a case with floating inputs is told to keep their dtype.
    ``infinity``: what an infinite entry means in this exercise's outputs (top-k filtering makes
    -inf on purpose), said instead of the generic advice about overflow.
    """

    dtype: str = ""
    infinity: str = ""
    floating_inputs: bool = False


def plural(count: int, noun: str, many: str = "") -> str:
    """'1 property', '3 properties', '1 wrong entry', '2 wrong entries'."""
    if count == 1:
        return f"{count} {noun}"
    if many:
        return f"{count} {many}"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def article(word: str) -> str:
    """'an int64', 'a float32', 'a uint8', 'an nn.Module': the article that goes with how ``word`` is read aloud."""
    vowel = word[:1].lower() in "aeiou" and not word.startswith(("uint", "use"))
    return f"{'an' if vowel or word.startswith('nn.') else 'a'} {word}"


def sentence(text: str) -> str:
    """``text`` ending as a sentence, so that what follows joins cleanly (torch messages often have no full stop)."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def describe(obj: Any) -> str:
    """A short phrase for a value: 'a float32 tensor of shape (2, 3) on cpu', 'None', 'a list of 4 items'."""
    if obj is None:
        return "None"
    if isinstance(obj, torch.Tensor):
        return f"{article(dtype_text(obj.dtype))} tensor of shape {tuple(obj.shape)} on {obj.device.type}"
    if isinstance(obj, tuple):
        return f"a tuple of {plural(len(obj), 'item')}"
    if isinstance(obj, list):
        return f"a list of {plural(len(obj), 'item')}"
    if isinstance(obj, dict):
        return f"a dict with {plural(len(obj), 'key')}"
    name = type(obj).__name__
    return f"{article(name)} ({obj!r})" if isinstance(obj, (int, float, str, bool)) else article(name)


def missing_and_extra(missing, extra, say_missing: Callable, say_extra: Callable) -> list[str]:
    """The phrases for the keys (or names) that are missing and those that are extra, in that order:
    ``say_missing(missing)`` when some are missing, ``say_extra(extra)`` when some are extra."""
    return ([say_missing(missing)] if missing else []) + ([say_extra(extra)] if extra else [])


def dtype_text(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _index(flat: int, shape) -> tuple:
    """The index of entry ``flat`` of a tensor of ``shape`` (plain arithmetic: torch.unravel_index imports sympy)."""
    index = []
    for size in reversed(tuple(shape)):
        flat, position = divmod(flat, size)
        index.append(position)
    return tuple(reversed(index))


def _at(index: tuple) -> str:
    return f"index {index}" if index else "the only entry"


def distinct(got: float, expected: float) -> tuple[str, str]:
    """Both numbers with as many significant digits as it takes to see that they differ (6 at least)."""
    for digits in range(6, 18):
        a, b = f"{got:.{digits}g}", f"{expected:.{digits}g}"
        if a != b:
            return a, b
    return f"{got!r}", f"{expected!r}"


def _precision_note(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> str:
    """On a float64 case, an error at float32's level of rounding points at a float32 step."""
    if dtype != torch.float64:
        return ""
    rtol32, atol32 = tolerance(torch.float32)
    if not torch.allclose(got, expected, rtol=rtol32, atol=atol32, equal_nan=True):
        return ""
    return (
        " An error this small, at float32's level of rounding, usually means one step computes in float32: "
        "a tensor made without dtype= (torch.tensor, torch.arange, torch.ones...) or a .float() somewhere."
    )


def _compare_infinities(
    got_c: torch.Tensor, expected_c: torch.Tensor, where: str, show_values: bool, hints: Hints
) -> str | None:
    """Non-finite entries are compared as such: an infinity is never a number 1.8e308 away."""
    missed = torch.isinf(expected_c) & (got_c != expected_c)
    if missed.any():
        first = _index(int(missed.flatten().nonzero()[0]), got_c.shape)
        wanted, value = ("-inf" if expected_c[first] < 0 else "inf"), got_c[first].item()
        advice = f" {hints.infinity}" if hints.infinity else ""
        if not show_values:  # where the hidden expected output is infinite is part of that output
            return f"{where} has another value where {wanted} was expected.{advice}"
        came = f"{value:.6g}" if math.isfinite(value) else ("NaN" if math.isnan(value) else f"{value}")
        return f"{where} should be {wanted} at {_at(first)}, but it is {came}.{advice}"
    bad_got = ~torch.isfinite(got_c) & torch.isfinite(expected_c)
    if bad_got.any():
        first = _index(int(bad_got.flatten().nonzero()[0]), got_c.shape)
        value = got_c[first].item()
        kind = "NaN" if math.isnan(value) else ("-inf" if value < 0 else "inf")
        advice = hints.infinity or GENERIC_INFINITY_ADVICE
        return f"{where} contains {kind} (first at {_at(first)}) where a finite number was expected. {advice}"
    return None


def _compare_tensor(got, expected: torch.Tensor, where: str, show_values: bool, hints: Hints) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"{where} should be {describe(expected)}, but it is {describe(got)}."
    if tuple(got.shape) != tuple(expected.shape):
        return f"{where} should have shape {tuple(expected.shape)}, but it has shape {tuple(got.shape)}."
    if got.dtype != expected.dtype:
        hint = hints.dtype or (KEEP_DTYPE if hints.floating_inputs and expected.is_floating_point() else "")
        hint = f" {hint}" if hint else ""
        return (
            f"{where} should have dtype {dtype_text(expected.dtype)}, but it has dtype {dtype_text(got.dtype)}.{hint}"
        )
    if got.device.type != expected.device.type:
        return (
            f"{where} should be on the {expected.device.type} device like the inputs, but it is on "
            f"{got.device.type}. Create new tensors with device= taken from the inputs."
        )
    got_c, expected_c = got.detach().cpu(), expected.detach().cpu()
    if not expected_c.is_floating_point():
        wrong = got_c != expected_c
        if not wrong.any():
            return None
        first = _index(int(wrong.flatten().nonzero()[0]), got_c.shape)
        detail = (
            f": at {_at(first)} it is {got_c[first].item()}, expected {expected_c[first].item()}" if show_values else ""
        )
        return f"{where} has {plural(int(wrong.sum()), 'wrong entry')} out of {wrong.numel()}{detail}."
    got_c, expected_c = got_c.double(), expected_c.double()
    message = _compare_infinities(got_c, expected_c, where, show_values, hints)
    if message:
        return message
    rtol, atol = tolerance(got.dtype)
    if torch.allclose(got_c, expected_c, rtol=rtol, atol=atol, equal_nan=True):
        return None
    finite = torch.isfinite(expected_c)
    error = torch.where(finite, (got_c - expected_c).abs(), torch.zeros_like(got_c)).nan_to_num(float("inf"))
    worst = _index(int(error.flatten().argmax()), got_c.shape)
    allowed = f"allowed: {atol:g} + {rtol:g} * |expected|"
    note = _precision_note(got_c, expected_c, got.dtype)
    if show_values:
        shown_got, shown_expected = distinct(got_c[worst].item(), expected_c[worst].item())
        return (
            f"{where} has the right shape but wrong values: the largest difference is "
            f"{error[worst].item():.3g} at {_at(worst)} (got {shown_got}, expected {shown_expected}; "
            f"{allowed}).{note}"
        )
    return (
        f"{where} has the right shape but wrong values: the largest difference is "
        f"{error[worst].item():.3g} ({allowed}).{note}"
    )


def compare(got: Any, expected: Any, where: str, show_values: bool = True, hints: Hints = Hints()) -> str | None:
    """None when ``got`` matches ``expected``, else one sentence saying what differs first."""
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(got, expected, where, show_values, hints)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{where} should be {describe(expected)}, but it is {describe(got)}."
        for i, (g, e) in enumerate(zip(got, expected)):
            message = compare(g, e, f"item {i} of {where}", show_values, hints)
            if message:
                return message
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where} should be a dict, but it is {describe(got)}."
        parts = missing_and_extra(
            expected.keys() - got.keys(),
            got.keys() - expected.keys(),
            lambda keys: f"is missing {plural(len(keys), 'key')} (e.g. {sorted(keys, key=str)[0]!r})",
            lambda keys: f"has {plural(len(keys), 'unexpected key')} (e.g. {sorted(keys, key=str)[0]!r})",
        )
        if parts:
            return f"{where} " + " and ".join(parts) + "."
        for key in expected:
            message = compare(got[key], expected[key], f"the value for {key!r} in {where}", show_values, hints)
            if message:
                return message
        return None
    if isinstance(expected, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"{where} should be a number, but it is {describe(got)}."
        if abs(got - expected) <= 1e-6 + 1e-5 * abs(expected):
            return None
        if not show_values:
            return f"{where} is wrong by {abs(got - expected):.3g}."
        shown_got, shown_expected = distinct(got, expected)
        return f"{where} is {shown_got}, expected {shown_expected}."
    if type(got) is not type(expected) and not (isinstance(expected, int) and isinstance(got, int)):
        return f"{where} should be {describe(expected)}, but it is {describe(got)}."
    if got != expected:
        return f"{where} is {got!r}, expected {expected!r}." if show_values else f"{where} is not what was expected."
    return None


def same(a: Any, b: Any, dtype: torch.dtype) -> bool:
    """Loose structural equality, used to recognise a known wrong version's output."""
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(b.shape) or a.device.type == "meta":
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        if not b.is_floating_point():
            return bool((a == b).all())
        rtol, atol = tolerance(dtype)
        return bool(torch.allclose(a.double(), b.double(), rtol=10 * rtol, atol=10 * atol, equal_nan=True))
    if isinstance(b, (tuple, list)):
        return isinstance(a, (tuple, list)) and len(a) == len(b) and all(same(x, y, dtype) for x, y in zip(a, b))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k], dtype) for k in b)
    if isinstance(b, float) and isinstance(a, (int, float)):
        return abs(a - b) <= 1e-6 + 1e-5 * abs(b)
    return a == b
