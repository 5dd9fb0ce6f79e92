"""How close is close enough, per dtype.

float32 results are compared with a float64 reference, so the tolerance covers
float32 rounding of a few chained operations; float64 results must agree to
roughly the last few digits.
"""

import torch

_TOLERANCES = {
    torch.float64: (1e-8, 1e-10),  # (rtol, atol)
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 1e-2),
    torch.float16: (5e-3, 1e-3),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for results computed in ``dtype``."""
    return _TOLERANCES.get(dtype, (0.0, 0.0))
