"""Notice when the student's code uses a built-in that the exercise asks them to write.

Two guards, because torch offers two kinds of shortcut:

- torch *functions* (``torch.softmax``, ``F.scaled_dot_product_attention``,
  ``Tensor.softmax``...) all pass through ``__torch_function__``, so a
  ``TorchFunctionMode`` sees every call, however the function was imported;
- torch *classes* (``nn.MultiheadAttention``) are plain Python: the guard wraps
  their ``__init__`` and ``forward`` for the duration of the call, which catches an
  instance made under any alias.

Calls are recorded, not only raised, so a student's ``try/except`` cannot hide them.
The course's own ready-made components (``autograder.components``), which later
chapters lend to students and which are built on these very built-ins, run
inside ``exempt()``.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode


def display_name(obj) -> str:
    """The name a student would write: ``torch.softmax``, ``Tensor.softmax``, ``torch.nn.functional.softmax``."""
    name = getattr(obj, "__name__", repr(obj))
    qualname = getattr(obj, "__qualname__", name)
    module = getattr(obj, "__module__", None) or "torch"
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    if qualname.startswith("_VariableFunctionsClass."):
        return f"torch.{name}"
    if module == "torch._C._special" or name.startswith("special_"):
        return f"torch.special.{name.removeprefix('special_')}"
    if module in ("torch._C._nn", "torch.nn.functional"):
        return f"torch.nn.functional.{name}"
    if module.startswith("torch.nn.modules"):
        return f"torch.nn.{qualname}"
    return f"{module}.{qualname}"


_exempt_depth = 0


@contextlib.contextmanager
def exempt():
    """Calls made inside this block are not recorded (for ``autograder.components`` only)."""
    global _exempt_depth
    _exempt_depth += 1
    try:
        yield
    finally:
        _exempt_depth -= 1


@dataclass
class _Recorder(TorchFunctionMode):
    functions: frozenset
    used: list = field(default_factory=list)

    def __post_init__(self):
        super().__init__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.functions and not _exempt_depth:
            self.used.append(func)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def watch(forbidden):
    """Run the body while recording uses of the ``forbidden`` functions and classes.

    Yields the list that collects what was used (functions and classes).
    """
    functions = frozenset(obj for obj in forbidden if not inspect.isclass(obj))
    classes = [obj for obj in forbidden if inspect.isclass(obj)]
    recorder = _Recorder(functions)
    originals = []

    def spy(cls, original):
        def wrapper(*args, **kwargs):
            if not _exempt_depth:
                recorder.used.append(cls)
            return original(*args, **kwargs)
        return wrapper

    try:
        for cls in classes:
            for attribute in ("__init__", "forward"):
                original = cls.__dict__.get(attribute)
                if original is not None:
                    originals.append((cls, attribute, original))
                    setattr(cls, attribute, spy(cls, original))
        with recorder:
            yield recorder.used
    finally:
        for cls, attribute, original in reversed(originals):
            setattr(cls, attribute, original)
