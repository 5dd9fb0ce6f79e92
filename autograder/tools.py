"""Measuring tools that the course's pages and benchmarks use: a public home, apart from the checks' internals.

``TensorMemoryMeter`` is the meter chapter 13's checks use for ``tiled_attention``.
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

FUSED_KERNELS = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


class TensorMemoryMeter(TorchDispatchMode):
    """The most bytes that tensors created inside the block held at one time.

    Every tensor that a torch operation returns inside the block is seen here (at the
    level of ATen operators, whatever Python function produced it). The meter keeps a weak
    reference to each new storage, so it knows when one is freed; the inputs listed in
    ``exclude`` (and views of them) are not counted. It does not see memory that a fused
    kernel allocates internally, only the tensors it returns. Run it under
    ``torch.no_grad()``: with autograd on, tensors saved for the backward pass stay alive.
    """

    def __init__(self, exclude=()):
        super().__init__()
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._live: dict = {}  # data_ptr -> (weak reference, bytes, shape of the tensor that made it)
        self.peak = 0
        self.largest_shape: tuple = ()
        self.fused_kernels: set = set()

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Nothing here runs under torch.compile; keeping torch's default would import
        torch._dynamo (seconds) the first time the meter is used."""
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._live = {ptr: entry for ptr, entry in self._live.items() if not entry[0].expired()}
        name = func.__name__
        if any(word in name for word in FUSED_KERNELS):
            self.fused_kernels.add(f"aten.{name}")
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                ptr = storage.data_ptr()
                if storage.nbytes() and ptr not in self._excluded and ptr not in self._live:
                    self._live[ptr] = (StorageWeakRef(storage), storage.nbytes(), tuple(tensor.shape))
        held = sum(entry[1] for entry in self._live.values())
        if held > self.peak:
            self.peak = held
            self.largest_shape = max(self._live.values(), key=lambda entry: entry[1])[2]
        return out
