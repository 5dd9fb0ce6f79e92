"""Compare what the student's code returned with what was expected, and say how they differ."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .tolerance import tolerance


def describe(obj: Any) -> str:
    """A short phrase for a value: 'a float32 tensor of shape (2, 3) on cpu', 'None', 'a list of 4 items'."""
    if obj is None:
        return "None"
    if isinstance(obj, torch.Tensor):
        dtype = str(obj.dtype).removeprefix("torch.")
        return f"a {dtype} tensor of shape {tuple(obj.shape)} on {obj.device.type}"
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)} items"
    if isinstance(obj, list):
        return f"a list of {len(obj)} items"
    if isinstance(obj, dict):
        return f"a dict with {len(obj)} keys"
    name = type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} ({obj!r})" if isinstance(obj, (int, float, str, bool)) else f"{article} {name}"


def _index(flat: int, shape) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(shape))) if len(shape) else ()


def _compare_tensor(got, expected: torch.Tensor, where: str, show_values: bool) -> Optional[str]:
    if not isinstance(got, torch.Tensor):
        return f"{where} should be {describe(expected)}, but it is {describe(got)}."
    if tuple(got.shape) != tuple(expected.shape):
        return f"{where} should have shape {tuple(expected.shape)}, but it has shape {tuple(got.shape)}."
    if got.dtype != expected.dtype:
        hint = " Keep the dtype of the inputs: avoid creating new tensors without dtype=." if expected.is_floating_point() else ""
        return (f"{where} should have dtype {str(expected.dtype).removeprefix('torch.')}, "
                f"but it has dtype {str(got.dtype).removeprefix('torch.')}.{hint}")
    if got.device.type != expected.device.type:
        return (f"{where} should be on the {expected.device.type} device like the inputs, but it is on "
                f"{got.device.type}. Create new tensors with device= taken from the inputs.")
    got_c, expected_c = got.detach().cpu(), expected.detach().cpu()
    if not expected_c.is_floating_point():
        wrong = got_c != expected_c
        if not wrong.any():
            return None
        first = _index(int(wrong.flatten().nonzero()[0]), got_c.shape)
        detail = f": at index {first} it is {got_c[first].item()}, expected {expected_c[first].item()}" if show_values else ""
        return f"{where} has {int(wrong.sum())} wrong entries out of {wrong.numel()}{detail}."
    got_c, expected_c = got_c.double(), expected_c.double()
    bad_got = ~torch.isfinite(got_c) & torch.isfinite(expected_c)
    if bad_got.any():
        first = _index(int(bad_got.flatten().nonzero()[0]), got_c.shape)
        kind = "NaN" if torch.isnan(got_c[first]) else "an infinite value"
        return (f"{where} contains {kind} (first at index {first}) where a finite number was expected. "
                "Look for an exp() that overflows, a division by zero, or -inf in every entry of a row.")
    rtol, atol = tolerance(got.dtype)
    if torch.allclose(got_c, expected_c, rtol=rtol, atol=atol, equal_nan=True):
        return None
    error = (got_c - expected_c).abs().nan_to_num(float("inf"))
    worst = _index(int(error.flatten().argmax()), got_c.shape)
    if show_values:
        return (f"{where} has the right shape but wrong values: the largest difference is "
                f"{error[worst].item():.3g} at index {worst} (got {got_c[worst].item():.6g}, "
                f"expected {expected_c[worst].item():.6g}; allowed: {atol:g} + {rtol:g} * |expected|).")
    return (f"{where} has the right shape but wrong values: the largest difference is "
            f"{error[worst].item():.3g} (allowed: {atol:g} + {rtol:g} * |expected|).")


def compare(got: Any, expected: Any, where: str, show_values: bool = True) -> Optional[str]:
    """None when ``got`` matches ``expected``, else one sentence saying what differs first."""
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(got, expected, where, show_values)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{where} should be {describe(expected)}, but it is {describe(got)}."
        for i, (g, e) in enumerate(zip(got, expected)):
            message = compare(g, e, f"item {i} of {where}", show_values)
            if message:
                return message
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where} should be a dict, but it is {describe(got)}."
        missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"is missing {len(missing)} keys (e.g. {sorted(missing, key=str)[0]!r})")
            if extra:
                parts.append(f"has {len(extra)} unexpected keys (e.g. {sorted(extra, key=str)[0]!r})")
            return f"{where} " + " and ".join(parts) + "."
        for key in expected:
            message = compare(got[key], expected[key], f"the value for {key!r} in {where}", show_values)
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
        return f"{where} is {got:.6g}, expected {expected:.6g}." if show_values else f"{where} is wrong by {abs(got - expected):.3g}."
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
