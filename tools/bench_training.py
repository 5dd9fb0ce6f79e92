"""How fast and how well chapter 12's reference `train_reversal_model` trains, measured as the check measures it.

    .venv/bin/python tools/bench_training.py                 # seeds 0 1 2
    .venv/bin/python tools/bench_training.py --seeds 0 1 2 3 4 --mistakes

For each seed it trains the reference once on one CPU thread, exactly as the check does
(CPU time, the same greedy decoding), then prints the CPU and wall-clock seconds and the
exact-match accuracy on a test set the size of the check's (30 sequences of each length
1 to 6). The check requires at least 95 % within 120 s of CPU time.

``--mistakes`` also trains the reference with two classic mistakes put into its batches
(the decoder reads tgt_out instead of tgt_in; the target is the source unreversed) and
prints the check's verdict on each, to show that real trainings get the diagnosis the
catalogue's stand-in models get.

Needs solutions/ (the reference); run it from the repository root.
"""

from __future__ import annotations

import argparse
import time
import types

import torch

from autograder import reference
from autograder.exercises import ch12_training as chapter
from autograder.spec import Result

CPU = torch.device("cpu")


def measure(train, seed: int, test_sets: list[torch.Tensor]) -> tuple[dict, float, str | None]:
    """(what the check's run hands back, wall seconds, the check's verdict: None when it passes)."""
    started = time.perf_counter()
    run = chapter._bind_training(train, CPU, seed, test_sets)
    wall = time.perf_counter() - started
    return run, wall, chapter._judge_training(test_sets)([Result(output=run)], None)


def accuracy(run: dict, test_sets: list[torch.Tensor]) -> float:
    right = sum(
        int((out == chapter._reversal_targets(src)[1]).all(1).sum()) for src, out in zip(test_sets, run["greedy"])
    )
    return right / sum(len(src) for src in test_sets)


def with_batches(ref, make_batch):
    """The reference's train_reversal_model, reading its batches from ``make_batch`` instead."""
    train = ref.train_reversal_model
    namespace = {**train.__globals__, "make_reversal_batch": make_batch}
    return types.FunctionType(train.__code__, namespace, train.__name__, train.__defaults__, train.__closure__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mistakes", action="store_true", help="also train with two catalogued mistakes")
    args = parser.parse_args()

    ref = reference.load(chapter.ASSIGNMENT)
    test_sets = chapter.reversal_test_sets(torch.Generator().manual_seed(20240607), chapter.TEST_PER_LENGTH)
    print(
        f"reference train_reversal_model on one CPU thread; {sum(map(len, test_sets))} test sequences of "
        f"{chapter.MIN_LEN} to {chapter.MAX_LEN} symbols; the check needs >= {chapter.PASS_ACCURACY:.0%} "
        f"within {chapter.TIME_LIMIT:.0f} s of CPU time"
    )
    for seed in args.seeds:
        run, wall, verdict = measure(ref.train_reversal_model, seed, test_sets)
        print(
            f"  seed {seed}: {run['seconds']:5.1f} s CPU, {wall:5.1f} s wall, exact match "
            f"{accuracy(run, test_sets):6.1%}, check {'passes' if verdict is None else 'FAILS: ' + verdict}",
            flush=True,
        )

    if args.mistakes:

        def tgt_out_as_input(*batch_args):
            src, _, tgt_out = ref.make_reversal_batch(*batch_args)
            return src, tgt_out, tgt_out

        def unreversed(*batch_args):
            src, tgt_in, tgt_out = ref.make_reversal_batch(*batch_args)
            return src, torch.cat([tgt_in[:, :1], src], 1), torch.cat([src, tgt_out[:, -1:]], 1)

        for name, make_batch in (("decoder reads tgt_out", tgt_out_as_input), ("target unreversed", unreversed)):
            run, wall, verdict = measure(with_batches(ref, make_batch), args.seeds[0], test_sets)
            print(
                f"  mistake '{name}': {run['seconds']:5.1f} s CPU, exact match {accuracy(run, test_sets):6.1%}; "
                f"the check says: {verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
