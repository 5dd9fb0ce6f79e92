"""Notice when the student's code uses a built-in that the exercise asks them to write.

An exercise forbids *capabilities*, not names: a ``Capability`` is what a built-in can
do, given as the ATen operators that implement it (``aten._softmax``, ``aten._log_softmax``,
...), with the public functions and classes that reach them and the name the message
uses. Torch offers many routes to one kernel (``torch.softmax``, ``torch._softmax``,
``torch.ops.aten._softmax``, ``F.softmin``, ``torch._C._special.special_softmax``...), and
three guards see them whatever they are called:

- every torch *function* call made by the student's code (``torch.x``, ``Tensor.x``,
  ``torch._C._nn.x``, ``torch.ops.aten.x``) passes through ``__torch_function__``: a
  ``TorchFunctionMode`` records it by identity (``F.softmax``, named as written) or by
  the ATen operator it binds (``torch._softmax`` is ``aten._softmax``). This is the only
  guard that sees operators that torch decomposes before dispatch
  (CompositeImplicitAutograd: ``aten.one_hot``, ``aten.cosine_similarity``,
  ``aten._scaled_dot_product_attention_math``...);
- every ATen operator that runs passes through a ``TorchDispatchMode``, however it was
  reached (inside a torch Python function that is allowed, say): it records the
  operators of the capability;
- torch *classes* (``nn.MultiheadAttention``) are plain Python: their ``__init__`` and
  ``forward`` are wrapped for the duration of the call, which catches an instance made
  under any alias.

What a recorded call does inside is not recorded again, so the first use is named as the
student wrote it. Uses are recorded, not only raised, so a student's ``try/except`` cannot
hide them. The course's own ready-made components (``autograder.components``), which later
chapters lend to students and which are built on these very built-ins, run inside
``exempt()``.

``scan_forbidden`` finds the same capabilities in the source (for grading: a name in the
source cannot be hidden by patching the runtime watch), on the AST only.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch._ops import OpOverload, OpOverloadPacket
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Capability:
    """What a forbidden built-in does: the ATen operators that implement it, and the routes to them that
    deserve their own name in the message. ``name`` is the built-in the message names."""

    name: str
    operators: frozenset = frozenset()  # ATen overload packets, without "aten.": "_softmax"
    functions: tuple = ()  # Python entry points, named as such when the student calls one
    classes: tuple = ()  # torch classes, caught under any alias or subclass

    def source_names(self) -> set[str]:
        """The names that, written in the source, reach this capability."""
        return set(self.operators) | {f.__name__ for f in self.functions} | {c.__name__ for c in self.classes}


def _ops(*names: str) -> frozenset:
    return frozenset(names)


# --- the capabilities that exercises forbid (checked against every torch route in
# tests/test_forbidden_routes.py); CUDA-only kernels are listed beside their CPU twins.

SOFTMAX = Capability(
    "torch.softmax",
    _ops(
        "softmax",
        "_softmax",
        "log_softmax",
        "_log_softmax",
        "special_softmax",
        "special_log_softmax",
        "_safe_softmax",
        "_masked_softmax",
        "_sparse_softmax",
        "_sparse_log_softmax",
    ),
    functions=(
        torch.softmax,
        F.softmax,
        torch.Tensor.softmax,
        torch.special.softmax,
        torch.log_softmax,
        F.log_softmax,
        torch.Tensor.log_softmax,
        F.softmin,
    ),
    classes=(nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d),
)

SCALED_DOT_PRODUCT_ATTENTION = Capability(
    "torch.nn.functional.scaled_dot_product_attention",
    _ops(
        "scaled_dot_product_attention",
        "_scaled_dot_product_attention_math",
        "_scaled_dot_product_attention_math_for_mps",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
        "_flash_attention_forward",
        "_efficient_attention_forward",
        "_cudnn_attention_forward",
        "_fused_sdp_choice",
        "_triton_scaled_dot_attention",
        "_native_multi_head_attention",
        "_triton_multi_head_attention",
        "_transformer_encoder_layer_fwd",
    ),
    functions=(F.scaled_dot_product_attention,),
)

MULTI_HEAD_ATTENTION = Capability(
    "torch.nn.MultiheadAttention",
    _ops("_native_multi_head_attention", "_triton_multi_head_attention"),
    functions=(F.multi_head_attention_forward,),
    classes=(nn.MultiheadAttention,),
)

# A layer is also reached through the torch modules built from it.
ENCODER_LAYER = Capability(
    "torch.nn.TransformerEncoderLayer",
    _ops("_transformer_encoder_layer_fwd"),
    classes=(nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.Transformer),
)
DECODER_LAYER = Capability(
    "torch.nn.TransformerDecoderLayer", classes=(nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)
)
ENCODER = Capability("torch.nn.TransformerEncoder", classes=(nn.TransformerEncoder, nn.Transformer))
TRANSFORMER = Capability("torch.nn.Transformer", classes=(nn.Transformer,))

RNN = Capability(
    "torch.nn.RNN",
    _ops("rnn_tanh", "rnn_tanh_cell", "_cudnn_rnn", "miopen_rnn"),
    functions=(torch.rnn_tanh, torch.rnn_tanh_cell),
    classes=(nn.RNN, nn.RNNCell),
)

ONE_HOT = Capability("torch.nn.functional.one_hot", _ops("one_hot"), functions=(F.one_hot,))

EMBEDDING = Capability(
    "torch.nn.functional.embedding",
    _ops("embedding", "embedding_bag", "_embedding_bag", "_embedding_bag_forward_only", "embedding_renorm_"),
    functions=(F.embedding, F.embedding_bag),
    classes=(nn.Embedding, nn.EmbeddingBag),
)

COSINE_SIMILARITY = Capability(
    "torch.cosine_similarity",
    _ops("cosine_similarity", "cosine_embedding_loss"),
    functions=(F.cosine_similarity, F.cosine_embedding_loss),
    classes=(nn.CosineSimilarity, nn.CosineEmbeddingLoss),
)

NORMALIZATION = Capability(
    "torch.nn.functional.layer_norm",
    _ops(
        "layer_norm",
        "native_layer_norm",
        "batch_norm",
        "native_batch_norm",
        "_batch_norm_impl_index",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "_batch_norm_with_update",
        "_batch_norm_with_update_functional",
        "_batch_norm_no_update",
        "cudnn_batch_norm",
        "miopen_batch_norm",
        "group_norm",
        "native_group_norm",
        "instance_norm",
        "rms_norm",
        "_fused_rms_norm",
    ),
    functions=(
        F.layer_norm,
        torch.layer_norm,
        torch.native_layer_norm,
        F.batch_norm,
        torch.batch_norm,
        F.group_norm,
        F.instance_norm,
        F.rms_norm,
    ),
    classes=(
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
    ),
)

# Cross-entropy is log_softmax followed by the negative log-likelihood: the capability is the
# second half, so that a hand-written loss built on log_softmax stays allowed.
CROSS_ENTROPY = Capability(
    "torch.nn.functional.cross_entropy",
    _ops("cross_entropy_loss", "nll_loss", "nll_loss_nd", "nll_loss2d", "nll_loss_forward", "nll_loss2d_forward"),
    functions=(F.cross_entropy, F.nll_loss),
    classes=(nn.CrossEntropyLoss, nn.NLLLoss),
)

UNFOLD = Capability(
    "torch.nn.functional.unfold",
    _ops("im2col", "unfold", "unfold_copy"),
    functions=(F.unfold, torch.Tensor.unfold),
    classes=(nn.Unfold,),
)

CONVOLUTION = Capability(
    "torch.nn.functional.conv2d",
    _ops(
        "convolution",
        "_convolution",
        "_convolution_mode",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "convolution_overrideable",
        "conv_tbc",
        "_slow_conv2d_forward",
        "slow_conv3d_forward",
        "slow_conv_dilated2d",
        "slow_conv_dilated3d",
        "slow_conv_transpose2d",
        "slow_conv_transpose3d",
        "thnn_conv2d",
        "_conv_depthwise2d",
        "conv_depthwise3d",
        "mkldnn_convolution",
        "_nnpack_spatial_convolution",
        "cudnn_convolution",
        "cudnn_convolution_transpose",
        "cudnn_convolution_relu",
        "cudnn_convolution_add_relu",
        "miopen_convolution",
        "miopen_convolution_transpose",
        "miopen_depthwise_convolution",
        "_mps_convolution",
        "_mps_convolution_transpose",
    ),
    functions=(F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d),
    classes=(nn.Conv1d, nn.Conv2d, nn.Conv3d),
)


def display_name(obj) -> str:
    """The name a student would write: ``torch.softmax``, ``Tensor.softmax``, ``torch.nn.functional.softmax``.

    A recorded use that is already a sentence fragment (a capability reached by another route) is kept."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, OpOverload):
        return f"torch.ops.{obj.namespace}.{obj._overloadpacket.__name__}.{obj._overloadname}"
    if isinstance(obj, OpOverloadPacket):
        return f"torch.ops.{obj._qualified_op_name.replace('::', '.')}"
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


def operator_name(func) -> str | None:
    """The ATen operator a torch callable binds (``torch._softmax``, ``Tensor.softmax``, ``torch.ops.aten._softmax``
    and its overloads all bind ``_softmax``), or None for anything else."""
    if isinstance(func, OpOverload):
        return func._overloadpacket.__name__ if func.namespace == "aten" else None
    if isinstance(func, OpOverloadPacket):
        namespace, _, name = func._qualified_op_name.partition("::")
        return name if namespace == "aten" else None
    qualname = getattr(func, "__qualname__", "")
    module = getattr(func, "__module__", None) or ""
    if (
        qualname.startswith(("TensorBase.", "Tensor."))
        or module == "torch"
        or module.startswith(("torch._C", "torch.nn.functional"))
    ):
        return getattr(func, "__name__", None)
    return None


def capabilities(forbidden: Iterable) -> list[Capability]:
    """An exercise's ``forbidden`` as capabilities: a plain class or function (a course component) is its own."""
    found = []
    for item in forbidden:
        if isinstance(item, Capability):
            found.append(item)
        elif inspect.isclass(item):
            found.append(Capability(display_name(item), classes=(item,)))
        else:
            found.append(Capability(display_name(item), functions=(item,)))
    return found


_exempt_depth = 0


@contextlib.contextmanager
def exempt():
    """Calls made inside this block are not recorded (for ``autograder.components``)."""
    global _exempt_depth
    _exempt_depth += 1
    try:
        yield
    finally:
        _exempt_depth -= 1


class _Record:
    """What one ``watch`` found, and whether it is inside a call it has recorded already (whose inner
    routes are not named again). Each watch has its own, so nested watches each see every call."""

    def __init__(self):
        self.used: list = []
        self.inside = 0

    def quiet(self) -> bool:
        return bool(_exempt_depth or self.inside)

    def add(self, what) -> None:
        if what not in self.used:
            self.used.append(what)

    @contextlib.contextmanager
    def within(self):
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1


@dataclass
class _FunctionWatch(TorchFunctionMode):
    functions: frozenset
    operators: dict  # ATen operator -> the first capability of the exercise that holds it
    record: _Record

    def __post_init__(self):
        super().__init__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.record.quiet():
            if func in self.functions:
                verdict = func
            else:
                capability = self.operators.get(operator_name(func))
                verdict = f"{capability.name} (called as {display_name(func)})" if capability is not None else None
            if verdict is not None:
                self.record.add(verdict)
                with self.record.within():
                    return func(*args, **kwargs)
        return func(*args, **kwargs)


class _OperatorWatch(TorchDispatchMode):
    def __init__(self, operators: dict, record: _Record):
        super().__init__()
        self.operators = operators
        self.record = record
        self.verdicts: dict = {}  # OpOverload -> what to record when it runs (None: nothing)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Nothing here runs under torch.compile; torch's default would import torch._dynamo (seconds)."""
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.record.quiet():
            if func not in self.verdicts:
                name = operator_name(func)
                capability = self.operators.get(name)
                self.verdicts[func] = (
                    f"{capability.name} (through the operator aten.{name})" if capability is not None else None
                )
            if self.verdicts[func] is not None:
                self.record.add(self.verdicts[func])
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def watch(forbidden):
    """Run the body while recording uses of the ``forbidden`` capabilities (or plain functions and classes).

    Yields the list that collects what was used, first use first: the functions and classes
    called by name, and a sentence fragment for a capability reached by another route.
    """
    found = capabilities(forbidden)
    functions = frozenset(f for c in found for f in c.functions)
    classes = list(dict.fromkeys(cls for c in found for cls in c.classes))
    operators: dict = {}
    for capability in found:
        for name in capability.operators:
            operators.setdefault(name, capability)
    record = _Record()
    originals = []

    def spy(cls, original):
        def wrapper(*args, **kwargs):
            if record.quiet():
                return original(*args, **kwargs)
            record.add(cls)
            with record.within():
                return original(*args, **kwargs)

        return wrapper

    try:
        for cls in classes:
            for attribute in ("__init__", "forward"):
                original = cls.__dict__.get(attribute)
                if original is not None:
                    originals.append((cls, attribute, original))
                    setattr(cls, attribute, spy(cls, original))
        with contextlib.ExitStack() as guards:
            if functions or operators:
                guards.enter_context(_FunctionWatch(functions, operators, record))
            if operators:
                guards.enter_context(_OperatorWatch(operators, record))
            yield record.used
    finally:
        for cls, attribute, original in reversed(originals):
            setattr(cls, attribute, original)


# --- the same capabilities in the source ---------------------------------------------------------

GETTERS = {"getattr", "__getattribute__", "__getattr__", "attrgetter", "methodcaller"}


def _definitions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(name, node) for each name a cell binds at its top level: functions, classes, assignments, imports."""
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.name, node))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [(n.id, node) for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [((a.asname or a.name).split(".")[0], node) for a in node.names]
    return found


def _uses(node: ast.AST, names: dict) -> Iterable[tuple[str, ast.AST]]:
    """(forbidden name, the code that reaches it) for every route written in ``node``: an attribute
    (``torch.ops.aten._softmax``), an imported name, a constant string given to ``getattr`` (or a
    ``__dict__`` lookup), or an ``aten::op`` string given to any call. Comments and docstrings are
    not code, and a student's own ``self.softmax`` is not torch's."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr in names:
            if not (isinstance(sub.value, ast.Name) and sub.value.id == "self"):
                yield sub.attr, sub
        elif isinstance(sub, ast.ImportFrom):
            yield from ((a.name, sub) for a in sub.names if a.name in names)
        elif isinstance(sub, ast.Call):
            callee = sub.func.attr if isinstance(sub.func, ast.Attribute) else getattr(sub.func, "id", None)
            for arg in sub.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    qualified = arg.value.removeprefix("aten::").removeprefix("aten.")
                    if qualified != arg.value and qualified.split(".")[0] in names:
                        yield qualified.split(".")[0], sub
                    elif callee in GETTERS and arg.value in names:
                        yield arg.value, sub
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) and sub.slice.value in names:
            holder = sub.value
            if (isinstance(holder, ast.Attribute) and holder.attr == "__dict__") or (
                isinstance(holder, ast.Call) and getattr(holder.func, "id", None) == "vars"
            ):
                yield sub.slice.value, sub


def _written(where: ast.AST, name: str) -> str:
    """The code that reaches ``name``, as short as it can be shown: ``torch.ops.aten._softmax``, ``.unfold``."""
    if isinstance(where, ast.ImportFrom):
        return f"from {where.module} import {name}"
    if isinstance(where, ast.Attribute):
        chain = where.value
        while isinstance(chain, ast.Attribute):
            chain = chain.value
        if not isinstance(chain, ast.Name):
            return f".{name}"
    return ast.unparse(where)


def scan_forbidden(cells: list[tuple[int, str, str]], exercise, before: int | None = None) -> str | None:
    """The first forbidden capability that the student's code for ``exercise`` reaches in its source, as the
    message names it (``torch.softmax (written `torch.ops.aten._softmax`)``), or None.

    ``cells`` are the student's code cells as (index, grade_id, source); only those before
    ``before`` (the test cell) count, and of those, the exercise's own cell and the student's
    extra cells. What is scanned is what the exercise's name is bound to when it is checked
    (its last definition), and what that uses in turn: the functions, classes, assignments and
    imports at the top level of those cells. A definition that uses its own name
    (``class SelfAttention(SelfAttention)``) reaches the one before it. A scratch line that
    compares one's work with the built-in is not part of the answer, a definition shadowed
    later is not what is checked, and another exercise's cell may use what is forbidden here.
    """
    names: dict[str, Capability] = {}
    for capability in capabilities(exercise.forbidden):
        for name in sorted(capability.source_names()):
            names.setdefault(name, capability)
    if not names:
        return None
    bindings: list[tuple[str, ast.AST]] = []  # in the order they run
    for index, grade_id, source in cells:
        if (before is not None and index >= before) or (grade_id and grade_id != exercise.name):
            continue
        try:
            bindings += _definitions(ast.parse(source))
        except SyntaxError:
            continue

    def bound(name: str, limit: int) -> int | None:
        return next((i for i in range(limit - 1, -1, -1) if bindings[i][0] == name), None)

    pending, seen = [bound(exercise.name, len(bindings))], set()
    while pending:
        position = pending.pop(0)
        if position is None or position in seen:
            continue
        seen.add(position)
        own, node = bindings[position]
        for used, where in _uses(node, names):
            capability = names[used]
            written = _written(where, used)
            return capability.name if written == capability.name else f"{capability.name} (written `{written}`)"
        pending += [
            bound(n.id, position if n.id == own else len(bindings)) for n in ast.walk(node) if isinstance(n, ast.Name)
        ]
    return None
