"""Nested Python data with tensors inside, to and from a safetensors file.

Fixtures (and anything else that crosses a process boundary) are plain data: a
JSON tree that names tensors stored in the same safetensors file. Nothing is
pickled, so loading a file can never run code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "x") -> Any:
    """Return a JSON-able tree for ``obj``; tensors go into ``tensors`` under unique keys.

    Everything is converted to plain built-in values first (a tensor subclass to the plain
    tensor of its values, a float subclass to ``float(...)``), so whatever reads the tree
    compares real values, never an object with its own ``__eq__``.
    """
    if isinstance(obj, torch.Tensor):
        plain = obj.detach()
        if type(plain) is not torch.Tensor:
            plain = plain.as_subclass(torch.Tensor)
        tensors[path] = plain.cpu().clone(memory_format=torch.contiguous_format)
        return {"tensor": path, "device": plain.device.type}
    if isinstance(obj, (tuple, list)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [pack(item, tensors, f"{path}.{i}") for i, item in enumerate(list(obj))]}
    if isinstance(obj, dict):
        items = list(dict(obj).items())
        if not all(isinstance(key, str) for key, _ in items):
            raise TypeError("only dicts with string keys can be stored")
        return {"dict": {str(key): pack(value, tensors, f"{path}.{key}") for key, value in items}}
    if obj is None:
        return {"value": None}
    for kind in (bool, int, float, str):  # bool before int: True is an int too
        if isinstance(obj, kind) or (kind is float and _is_numpy_float(obj)):
            value = kind(obj)
            if kind is float and not math.isfinite(value):
                return {"float": repr(value)}
            return {"value": value}
    raise TypeError(f"cannot store a {type(obj).__name__}")


def _is_numpy_float(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and hasattr(obj, "dtype") and obj.dtype.kind == "f"


def unpack(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if "tensor" in tree:
        tensor = tensors[tree["tensor"]]
        device = tree.get("device", "cpu")
        return tensor.to(device) if device != "cpu" and _available(device) else tensor
    ((kind, body),) = tree.items()
    if kind == "tuple":
        return tuple(unpack(item, tensors) for item in body)
    if kind == "list":
        return [unpack(item, tensors) for item in body]
    if kind == "dict":
        return {key: unpack(value, tensors) for key, value in body.items()}
    if kind == "float":
        return float(body)
    return body


def _available(device: str) -> bool:
    return device == "cuda" and torch.cuda.is_available()


def save(obj: Any, path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = pack(obj, tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"tree": json.dumps(tree, sort_keys=True)})


def load(path: Path) -> Any:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tree = json.loads(handle.metadata()["tree"])
    return unpack(tree, load_file(str(path)))
