"""What tiling buys: peak memory and time of attention as the number of keys grows.

    .venv/bin/python tools/bench_tiled_attention.py [--q-len 256] [--k-lens 1024 2048 4096 8192 16384]
        [--d 64] [--block-size 128] [--repeats 3] [--threads N] [--device cpu] [--notebook PATH]

For each key length T_k, three ways to compute the same attention output (batch 1, one head,
float32; the tensors are (1, 1, T, d), the 4-D layout PyTorch's fused CPU kernel needs):

- naive: softmax(q k^T / sqrt(d)) v with the whole (T_q, T_k) score matrix (the baseline: PyTorch's
  attention forced onto its plain "math" path);
- tiled: chapter 13's ``tiled_attention`` (one block of keys at a time, online softmax);
- fused: ``torch.nn.functional.scaled_dot_product_attention``, PyTorch's fused kernel.

Memory is the peak of what the tensors each one creates hold at one time, measured by the
``TensorMemoryMeter`` that chapter 13's checks use (a TorchDispatchMode that follows every
tensor an ATen operator returns; it does not see scratch memory inside a fused kernel).
Time is the best of ``--repeats`` runs. Ratios are against the naive version measured in the
same run. By default the reference ``tiled_attention`` (``solutions/``) is measured;
``--notebook`` measures the one in any chapter-13 notebook. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kv_cache import load_solutions, parse_arguments, run_solutions  # noqa: E402

from autograder.tools import TensorMemoryMeter  # noqa: E402


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The textbook computation, with the whole score matrix: PyTorch's attention on its plain "math" path."""
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def peak_memory(run, *inputs: torch.Tensor) -> int:
    """Bytes held at the peak by the tensors ``run`` creates (its inputs not counted)."""
    with torch.no_grad(), TensorMemoryMeter(exclude=inputs) as meter:
        run()
    return meter.peak


def best_time(run, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--q-len", type=int, default=256)
    parser.add_argument("--k-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--d", type=int, default=64, help="d_k = d_v")
    parser.add_argument("--block-size", type=int, default=128)
    args = parse_arguments(parser, "a chapter-13 notebook whose tiled_attention to measure")

    device = torch.device(args.device)
    tiled = load_solutions(args.notebook).tiled_attention
    print(
        f"Attention of T_q={args.q_len} queries, d={args.d}, block_size={args.block_size}, batch 1, float32, "
        f"{device.type}, {torch.get_num_threads()} CPU threads; time = best of {args.repeats}."
    )
    print(
        f"{'T_k':>6} | {'peak MiB: naive':>15} {'tiled':>14} {'fused':>14} | "
        f"{'ms: naive':>9} {'tiled':>12} {'fused':>12} | {'max |tiled - naive|':>19}"
    )
    mib = 2**20
    torch.manual_seed(0)
    for k_len in args.k_lens:
        q = torch.randn(1, 1, args.q_len, args.d, device=device)
        k, v = (torch.randn(1, 1, k_len, args.d, device=device) for _ in range(2))
        runs = {
            "naive": partial(naive_attention, q, k, v),
            "tiled": partial(tiled, q, k, v, args.block_size),
            "fused": partial(F.scaled_dot_product_attention, q, k, v),
        }
        with torch.no_grad():
            run_solutions(runs["tiled"])
            memory = {name: peak_memory(run, q, k, v) for name, run in runs.items()}
            times = {name: best_time(run, args.repeats, device) for name, run in runs.items()}
            error = (runs["tiled"]() - runs["naive"]()).abs().max().item()
        base_memory, base_time = memory["naive"], times["naive"]
        print(
            f"{k_len:>6} | {base_memory / mib:>15.2f} "
            + " ".join(f"{memory[n] / mib:>6.2f} ({memory[n] / base_memory:>4.2f}x)" for n in ("tiled", "fused"))
            + f" | {1e3 * base_time:>9.1f} "
            + " ".join(f"{1e3 * times[n]:>5.1f} ({times[n] / base_time:>4.2f}x)" for n in ("tiled", "fused"))
            + f" | {error:>19.2e}"
        )


if __name__ == "__main__":
    main()
