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
    """Return a JSON-able tree for ``obj``; tensors go into ``tensors`` under unique keys."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {"tensor": path}
    if isinstance(obj, (tuple, list)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [pack(item, tensors, f"{path}.{i}") for i, item in enumerate(obj)]}
    if isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise TypeError("only dicts with string keys can be stored")
        return {"dict": {key: pack(value, tensors, f"{path}.{key}") for key, value in obj.items()}}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"float": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"cannot store a {type(obj).__name__}")


def unpack(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    (kind, body), = tree.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "tuple":
        return tuple(unpack(item, tensors) for item in body)
    if kind == "list":
        return [unpack(item, tensors) for item in body]
    if kind == "dict":
        return {key: unpack(value, tensors) for key, value in body.items()}
    if kind == "float":
        return float(body)
    return body


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
