"""What a KV cache buys: generate T tokens with one causal self-attention layer, two ways.

    .venv/bin/python tools/bench_kv_cache.py [--lengths 256 1024] [--d-model 128] [--heads 4]
        [--repeats 3] [--threads N] [--device cpu] [--notebook PATH]

- baseline: at every step, run the layer on the whole prefix with a causal mask and keep the
  last row (what a decoder without a cache does: it recomputes every earlier token's query,
  key, value and attention at each step);
- cached: chapter 13's ``cached_attention_step`` with a ``KVCache``: one new query, key and
  value per step, attending over the cached keys and values.

Both run in this process, on the same weights and inputs, under ``torch.inference_mode()``.
The script prints the best of ``--repeats`` timings of each, their ratio (the speed-up),
and the largest difference between the two outputs, which must be at rounding level.
By default it times the reference solutions (``solutions/``); ``--notebook`` times the
``KVCache`` and ``cached_attention_step`` of any chapter-13 notebook (a student's, say).
The baseline's work grows like T^3, so its 1,024-token runs take a while on a CPU (tens of
seconds each). Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import reference  # noqa: E402
from autograder.components import MultiHeadAttention  # noqa: E402

ASSIGNMENT = "ch13_efficient_inference"


def load_solutions(notebook: str | None) -> SimpleNamespace:
    """The chapter-13 functions: from the reference solutions, or from the given notebook's cells."""
    if notebook is None:
        return reference.load(ASSIGNMENT)
    namespace: dict = {"__name__": "bench_notebook"}
    try:
        for source in reference.reference_sources(json.loads(Path(notebook).read_text(encoding="utf-8"))):
            exec(compile(source, notebook, "exec"), namespace)
    except Exception as error:  # a tool for students: one sentence, not a traceback
        sys.exit(f"Could not run the set-up and solution cells of {notebook}: {type(error).__name__}: {error}")
    return SimpleNamespace(**namespace)


def parse_arguments(parser: argparse.ArgumentParser, notebook_help: str) -> argparse.Namespace:
    """Add the options both chapter-13 benchmarks take, parse the command line and apply --threads."""
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is kept")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--notebook", help=notebook_help)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def run_solutions(run):
    """Call ``run()``; if the notebook's exercises are not written yet, say so in one sentence."""
    try:
        return run()
    except NotImplementedError:
        sys.exit("The notebook's chapter-13 exercises still raise NotImplementedError: finish them first.")


def generate_recomputing(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Step t runs the layer on x[:, :t + 1] with a causal mask and keeps the last output row."""
    length = x.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    outputs = []
    for t in range(length):
        prefix = x[:, : t + 1]
        out, _ = mha(prefix, prefix, prefix, causal[: t + 1, : t + 1])
        outputs.append(out[:, -1:])
    return torch.cat(outputs, dim=1)


def generate_cached(solutions: SimpleNamespace, mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    cache = solutions.KVCache()
    return torch.cat([solutions.cached_attention_step(mha, x[:, t : t + 1], cache) for t in range(x.shape[1])], dim=1)


def best_time(run, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024], help="tokens generated")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    args = parse_arguments(parser, "a chapter-13 notebook whose KVCache and cached_attention_step to time")

    device = torch.device(args.device)
    solutions = load_solutions(args.notebook)
    torch.manual_seed(0)
    mha = MultiHeadAttention(args.d_model, args.heads).to(device).eval()
    print(
        f"One causal self-attention layer, d_model={args.d_model}, {args.heads} heads, batch 1, float32, "
        f"{device.type}, {torch.get_num_threads()} CPU threads; best of {args.repeats}."
    )
    print(f"{'tokens':>7} {'recompute (s)':>14} {'KV cache (s)':>13} {'speed-up':>9} {'max |difference|':>17}")
    with torch.inference_mode():
        for length in args.lengths:
            x = torch.randn(1, length, args.d_model, device=device)
            baseline, expected = best_time(partial(generate_recomputing, mha, x), args.repeats, device)
            cached, got = run_solutions(
                partial(best_time, partial(generate_cached, solutions, mha, x), args.repeats, device)
            )
            error = (got - expected).abs().max().item()
            print(f"{length:>7} {baseline:>14.3f} {cached:>13.3f} {baseline / cached:>8.1f}x {error:>17.2e}")


if __name__ == "__main__":
    main()
