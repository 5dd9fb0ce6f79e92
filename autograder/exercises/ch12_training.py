"""Chapter 12: training the chapter-10 Transformer on sequence reversal.

``make_reversal_batch`` takes a ``torch.Generator`` and ``train_reversal_model`` trains a model,
so both are called through the ``Bound`` strategy: a case stores a seed, and the binding turns
it into the real argument. The training check never compares a model with a reference: it
trains the student's model once, greedy-decodes a test set of reversal problems with it,
and hands back plain data (the time taken, the decoded tokens, the teacher-forced
predictions) that the verdict reads. The model is trained once per function and seed: the
visible and the hidden check share that run (``_trained``), so a notebook trains once.

The catalogued mistakes of ``train_reversal_model`` are models that *behave* like the
result of a known mistake (one that copies its decoder input, as a model trained without
shifting the target does), built without training: a real training run per mistake would
cost a minute of test time each. The chapter's benchmark (``tools/bench_training.py``) shows
that real trainings with these mistakes get the same diagnosis.
"""
from __future__ import annotations

import hashlib
import time
import types
import weakref

try:
    import resource
except ImportError:  # Windows: no child-process accounting
    resource = None

import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from .. import forbidden as capability
from ..calling import Bound
from ..cases import changed_output, gradients_reach, randn
from ..compare import describe
from ..errors import CheckFailure
from ..forbidden import display_name, watch
from ..spec import Case, Exercise

ASSIGNMENT = "ch12_training"

# The task, as the notebook's set-up cell states it: ids 0..3 are <pad>, <unk>, <bos>, <eos>;
# 4..VOCAB_SIZE-1 are the symbols to reverse; a test sequence holds MIN_LEN to MAX_LEN symbols.
VOCAB_SIZE, PAD_ID, BOS_ID, EOS_ID = 14, 0, 2, 3
MIN_LEN, MAX_LEN = 1, 6
TIME_LIMIT = 120.0  # seconds of training, on one CPU thread
PASS_ACCURACY = 0.95
TEST_PER_LENGTH = 30  # test sequences of each length, in the visible and in the hidden check


# ------------------------------------------------------------------ make_reversal_batch
def _bind_batch(impl, device, batch_size, seq_len, vocab_size, draws):
    """``draws`` = {"seed"}: the generator, on the CPU. The global generator is seeded too (and
    restored), so that a version that ignores ``generator`` draws reproducibly and can be recognised."""
    generator = torch.Generator().manual_seed(draws["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draws["seed"] + 1_000_003)
        return impl(batch_size, seq_len, vocab_size, generator)


make_reversal_batch = Exercise("make_reversal_batch", ASSIGNMENT, call=Bound(_bind_batch),
                                    outputs=("src", "tgt_in", "tgt_out"), dtypes=(None,), points=(1, 1), difficulty=1, minutes=10, task="`(src, tgt_in, tgt_out)` for reversal, with a seeded generator: `src (B, T)`, `tgt_in` and `tgt_out (B, T + 1)`")


def _batch_case(batch_size, seq_len, vocab_size, seed):
    return Case(f"make_reversal_batch({batch_size}, {seq_len}, {vocab_size}, generator) with a generator seeded "
                f"with {seed}", (batch_size, seq_len, vocab_size, {"seed": seed}))


@make_reversal_batch.cases
def _(g, hidden):
    if not hidden:
        return [_batch_case(2, 5, 10, 0), _batch_case(3, 1, 14, 7), _batch_case(4, 6, 20, 123)]
    def seed():
        return int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    return [_batch_case(5, 7, 14, seed()), _batch_case(1, 12, 30, seed()), _batch_case(8, 2, 5, seed()),
            _batch_case(3, 1, 6, seed()), _batch_case(64, 6, 14, seed())]


def _with_target(ref, target_of):
    """A wrong make_reversal_batch whose target (after bos in tgt_in, before eos in tgt_out) is ``target_of(src)``."""
    def change(batch, *_):
        src, tgt_in, tgt_out = batch
        target = target_of(src)
        return src, torch.cat([tgt_in[:, :1], target], 1), torch.cat([target, tgt_out[:, -1:]], 1)
    return changed_output(ref.make_reversal_batch, change)


@make_reversal_batch.mistake("the target is not reversed: tgt_in and tgt_out must hold the source backwards, src.flip(1).")
def not_reversed(ref):
    return _with_target(ref, lambda src: src)


@make_reversal_batch.mistake("each sequence is reversed along the batch axis (flip(0)) instead of along its own "
                             "tokens (flip(1)).")
def flips_the_batch(ref):
    return _with_target(ref, lambda src: src.flip(0))


@make_reversal_batch.mistake("tgt_in and tgt_out are swapped: the decoder reads [bos] + target and must predict "
                             "target + [eos].")
def swapped_in_and_out(ref):
    return changed_output(ref.make_reversal_batch, lambda batch, *_: (batch[0], batch[2], batch[1]))


@make_reversal_batch.mistake("tgt_in is not shifted: it should be [bos] + target, so that at each position the "
                             "decoder reads the previous token and predicts the next.")
def not_shifted(ref):
    return changed_output(ref.make_reversal_batch, lambda batch, *_: (batch[0], batch[2], batch[2]))


@make_reversal_batch.mistake("the tokens are drawn from 0..vocab_size-1, which includes the special ids 0..3 "
                             "(<pad>, <unk>, <bos>, <eos>): draw them from 4..vocab_size-1.")
def draws_special_ids(ref):
    def wrong(batch_size, seq_len, vocab_size, generator):
        src, tgt_in, tgt_out = ref.make_reversal_batch(batch_size, seq_len, vocab_size + 4, generator)
        return src - 4, torch.cat([tgt_in[:, :1], tgt_in[:, 1:] - 4], 1), torch.cat([tgt_out[:, :-1] - 4, tgt_out[:, -1:]], 1)
    return wrong


@make_reversal_batch.mistake("the draw does not use `generator`: pass generator=generator to torch.randint, so that "
                             "the same seed gives the same batch.")
def ignores_generator(ref):
    return lambda batch_size, seq_len, vocab_size, generator: ref.make_reversal_batch(batch_size, seq_len, vocab_size, None)


# ------------------------------------------------------------ label_smoothed_cross_entropy
label_smoothed_cross_entropy = Exercise(
    "label_smoothed_cross_entropy", ASSIGNMENT,
    forbidden=(capability.CROSS_ENTROPY,),
    why_forbidden="the point is to write the loss from log_softmax", points=(2, 2), difficulty=3, minutes=25, task="the label-smoothed cross-entropy for `logits (N, V)` and `target (N,)`, ignoring padding, without `F.cross_entropy`",
)


def _loss_case(logits, target, smoothing, ignore_index=None, note=""):
    label = (f"logits {tuple(logits.shape)}, target {tuple(target.shape)}{note}, smoothing={smoothing}"
             + (f", ignore_index={ignore_index}" if ignore_index is not None else ""))
    return Case(label, (logits, target, smoothing), {} if ignore_index is None else {"ignore_index": ignore_index})


def _confident(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logits of a model that is nearly always right: the target's logit raised by 6 in every row
    that is not padding (a model has nothing to be right about there)."""
    boost = 6.0 * F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return logits + boost * (target != PAD_ID).unsqueeze(-1)


def _targets(g, n, vocab, ignored=0, ignore_index=PAD_ID):
    """n target ids in 0..vocab-1, exactly ``ignored`` of them equal to ignore_index (never all of them)."""
    target = torch.randint(0, vocab, (n,), generator=g)
    target[target == ignore_index] = (ignore_index + 1) % vocab
    target[torch.randperm(n, generator=g)[:ignored]] = ignore_index
    return target


@label_smoothed_cross_entropy.cases
def _(g, hidden):
    if not hidden:
        target = _targets(g, 6, 5, ignored=2)
        return [
            _loss_case(_confident(randn(g, 6, 5), target), target, 0.2, note=" with 2 padding targets (id 0)"),
            _loss_case(randn(g, 4, 7), _targets(g, 4, 7), 0.0, note=" (no smoothing: plain cross-entropy)"),
            _loss_case(randn(g, 8, 10), _targets(g, 8, 10, ignored=3, ignore_index=1), 0.2, 1,
                       note=" with 3 targets equal to ignore_index"),
            _loss_case(randn(g, 3, 6, scale=1e4), _targets(g, 3, 6), 0.1, note=" with entries near 1e4"),
        ]
    shuffled = randn(g, 9, 6).T
    target = _targets(g, 10, 6, ignored=3)
    return [
        _loss_case(_confident(randn(g, 10, 6), target), target, 0.3, note=" with padding targets"),
        _loss_case(randn(g, 12, 14, scale=2), _targets(g, 12, 14, ignored=3), 0.1, note=" with padding targets"),
        _loss_case(randn(g, 3, 30), _targets(g, 3, 30), 0.3),
        _loss_case(randn(g, 7, 5), _targets(g, 7, 5, ignored=1), 1.0, note=" (smoothing 1: uniform target)"),
        _loss_case(randn(g, 12, 8), _targets(g, 12, 8, ignored=4, ignore_index=5), 0.15, 5),
        _loss_case(shuffled, _targets(g, 6, 9, ignored=1), 0.1, note=" (non-contiguous logits)"),
        _loss_case(randn(g, 5, 11, scale=1e4), _targets(g, 5, 11, ignored=2), 0.05, note=" with entries near 1e4"),
        _loss_case(randn(g, 1, 4), _targets(g, 1, 4), 0.1, note=" (a single target)"),
    ]


@label_smoothed_cross_entropy.prop("gradients reach the logits, and ignored positions get exactly zero gradient")
def _(g):
    logits, target = randn(g, 6, 5), _targets(g, 6, 5, ignored=2)
    ignored = target == PAD_ID

    def judge(results, dtype):
        grad = (results[0].grads or {}).get("args.0")
        if grad is None or not torch.isfinite(grad).all():
            return gradients_reach({"args.0": "logits"})(results, dtype)
        grad = grad.detach().cpu()
        if (grad[ignored] != 0).any():
            return ("The logits at ignored positions (target == ignore_index) still get a gradient: leave those "
                    "positions out of the loss entirely, so that padding cannot teach the model anything.")
        if (grad[~ignored].abs().sum(-1) == 0).any():
            return "Some positions that are not ignored get no gradient: every non-ignored target must count."
        return None
    return [Case("logits (6, 5), target (6,) with 2 padding targets, smoothing=0.1", (logits, target, 0.1),
                 grad=True)], judge


def _valid(target, ignore_index):
    return (target != ignore_index).sum()


@label_smoothed_cross_entropy.mistake("the smoothing is ignored: this is plain cross-entropy. With smoothing s the target "
                                      "puts 1 - s on the right token and spreads s evenly over all V tokens.")
def no_smoothing(ref):
    return lambda logits, target, smoothing, ignore_index=PAD_ID: ref.label_smoothed_cross_entropy(
        logits, target, 0.0, ignore_index)


@label_smoothed_cross_entropy.mistake("padding is not ignored: positions whose target equals ignore_index must not count "
                                      "at all, neither in the sum nor in the number you divide by.")
def padding_counted(ref):
    return lambda logits, target, smoothing, ignore_index=PAD_ID: ref.label_smoothed_cross_entropy(
        logits, target, smoothing, -100)


@label_smoothed_cross_entropy.mistake("the sum over the non-ignored positions is divided by the number of all positions: "
                                      "divide by the number of non-ignored targets.")
def divides_by_all_positions(ref):
    def wrong(logits, target, smoothing, ignore_index=PAD_ID):
        loss = ref.label_smoothed_cross_entropy(logits, target, smoothing, ignore_index)
        return loss * _valid(target, ignore_index) / target.numel()
    return wrong


@label_smoothed_cross_entropy.mistake("the loss is summed instead of averaged over the non-ignored targets.")
def sums_instead_of_mean(ref):
    def wrong(logits, target, smoothing, ignore_index=PAD_ID):
        return ref.label_smoothed_cross_entropy(logits, target, smoothing, ignore_index) * _valid(target, ignore_index)
    return wrong


@label_smoothed_cross_entropy.mistake("the smoothing mass s is spread over the V - 1 wrong tokens only; here (as in "
                                      "PyTorch) it is spread over all V tokens, the right one included: s / V each.")
def spreads_over_wrong_tokens(ref):
    return lambda logits, target, smoothing, ignore_index=PAD_ID: ref.label_smoothed_cross_entropy(
        logits, target, smoothing * logits.shape[-1] / (logits.shape[-1] - 1), ignore_index)


@label_smoothed_cross_entropy.mistake("the right token's term is not weighted by (1 - smoothing): the loss is "
                                      "(1 - s) * (-log p[target]) + s * mean over tokens of (-log p).")
def target_not_down_weighted(ref):
    def wrong(logits, target, smoothing, ignore_index=PAD_ID):
        return (ref.label_smoothed_cross_entropy(logits, target, smoothing, ignore_index)
                + smoothing * ref.label_smoothed_cross_entropy(logits, target, 0.0, ignore_index))
    return wrong


@label_smoothed_cross_entropy.mistake("calls the built-in cross-entropy", expect="uses torch.nn.functional.cross_entropy")
def builtin(ref):
    return lambda logits, target, smoothing, ignore_index=PAD_ID: F.cross_entropy(
        logits, target, ignore_index=ignore_index, label_smoothing=smoothing)


# ---------------------------------------------------------------- train_reversal_model
_trained: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> {seed: (fingerprint, model, seconds, used)}


def _cpu_seconds() -> float:
    """CPU time used so far by this process (all its threads) and by the child processes it waited for."""
    if resource is None:
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _fingerprint(impl) -> tuple:
    """What a training function may depend on in its notebook: the notebook's own functions and
    classes (by identity) and its plain settings (by value). Re-running a cell that defines any of
    them (the loss, the batches, a constant) makes the checks train again."""
    module = getattr(impl, "__module__", None)
    own = []
    for name, value in getattr(impl, "__globals__", {}).items():
        if name.startswith("_") or name in ("In", "Out"):
            continue
        if isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", None) == module:
            own.append((name, id(value)))
        elif isinstance(value, (bool, int, float, str)):
            own.append((name, repr(value)[:200]))
    return tuple(sorted(own))


def _train_once(impl, seed: int):
    """Train with ``impl(seed)`` on one CPU thread, or reuse the model the same function (with the same
    notebook around it) already trained with this seed: the visible and the hidden check share one
    run. The time is CPU time, so that a busy machine does not count against the student (and extra
    threads or processes do).

    Returns (model, CPU seconds, the forbidden built-ins the training used): a check that reuses the
    model is told what its training used, as the check that trained it was."""
    runs = _trained.setdefault(impl, {}) if _weakly_referable(impl) else {}
    fingerprint = _fingerprint(impl)
    if seed not in runs or runs[seed][0] != fingerprint:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with watch(train_reversal_model.forbidden) as used:
                started = _cpu_seconds()
                model = impl(seed)
                seconds = _cpu_seconds() - started
            runs[seed] = (fingerprint, model, seconds, list(dict.fromkeys(display_name(u) for u in used)))
        finally:
            torch.set_num_threads(threads)
    return runs[seed][1:]


def _weakly_referable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


@torch.no_grad()
def _greedy(model: nn.Module, src: torch.Tensor, steps: int) -> torch.Tensor:
    """The first ``steps`` tokens the model writes after <bos> for each source (batched greedy decoding)."""
    memory = model.encode(src)
    out = torch.full((src.shape[0], 1), BOS_ID, dtype=torch.long, device=src.device)
    for _ in range(steps):
        next_ids = model.decode(out, memory, src)[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, next_ids], dim=1)
    return out[:, 1:]


def _reversal_targets(src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tgt_in, tgt_out) for sources (n, L): [bos] + reversed, reversed + [eos]."""
    reversed_src = src.flip(1)
    bos = torch.full_like(src[:, :1], BOS_ID)
    eos = torch.full_like(src[:, :1], EOS_ID)
    return torch.cat([bos, reversed_src], 1), torch.cat([reversed_src, eos], 1)


def _check_model(model, name: str) -> torch.device:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "encode", None)) \
            or not callable(getattr(model, "decode", None)):
        raise CheckFailure(f"`{name}` should return the trained Transformer (an nn.Module with encode and decode), "
                           f"but it returned {describe(model)}.")
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise CheckFailure(f"The model that `{name}` returned has no parameters: return the Transformer you trained.")
    return parameter.device


def _bind_training(impl, device, seed, test_sets):
    """Train (once per function and seed), then decode every test source greedily.

    Returns plain data: the CPU seconds the training took, the forbidden built-ins it used, and per
    test set (one per source length) the greedy outputs and the teacher-forced predictions, both
    (n, L + 1), and the teacher-forced cross-entropy and the number reversed exactly (both only shown
    to the student: the verdict judges the outputs themselves).
    """
    model, seconds, used = _train_once(impl, seed)
    model_device = _check_model(model, "train_reversal_model")
    was_training = model.training
    model.eval()
    try:
        probe = torch.arange(VOCAB_SIZE, device=model_device)[None, 4:]
        try:
            with torch.no_grad():
                logits = model.decode(torch.tensor([[BOS_ID]], device=model_device), model.encode(probe), probe)
        except (IndexError, RuntimeError) as error:
            raise CheckFailure("The model cannot read every token id of the task (0 to "
                               f"{VOCAB_SIZE - 1}): make it with src_vocab = tgt_vocab = VOCAB_SIZE ({VOCAB_SIZE}). "
                               f"({type(error).__name__}: {str(error).splitlines()[0][:120]})") from None
        if logits.shape[-1] != VOCAB_SIZE:
            raise CheckFailure(f"The model's logits have {logits.shape[-1]} entries per position, but the task has "
                               f"{VOCAB_SIZE} token ids: make it with src_vocab = tgt_vocab = VOCAB_SIZE ({VOCAB_SIZE}).")
        greedy, forced, losses = [], [], []
        with torch.no_grad():
            for src in test_sets:
                src = src.to(model_device)
                tgt_in, tgt_out = _reversal_targets(src)
                greedy.append(_greedy(model, src, src.shape[1] + 1).cpu())
                logits = model(src, tgt_in)
                forced.append(logits.argmax(-1).cpu())
                losses.append(-float(torch.log_softmax(logits.double(), -1).gather(-1, tgt_out[..., None]).mean()))
    finally:
        model.train(was_training)
    exact = sum(int((out == _reversal_targets(src)[1]).all(1).sum()) for src, out in zip(test_sets, greedy))
    return {"seconds": float(seconds), "forbidden": used, "greedy": greedy, "teacher_forced": forced, "loss": losses,
            "exact": exact}


train_reversal_model = Exercise(
    "train_reversal_model", ASSIGNMENT, call=Bound(_bind_training), dtypes=(None,),
    # Watched by name, not by operator: an operator-level watch would slow the timed training itself.
    forbidden=(F.cross_entropy, nn.CrossEntropyLoss, F.nll_loss, nn.NLLLoss, torch._C._nn.cross_entropy_loss,
               torch._C._nn.nll_loss, torch._C._nn.nll_loss_nd),
    why_forbidden="train with your own label_smoothed_cross_entropy of exercise 2", points=(3, 3), difficulty=4, minutes=50, task="the whole training run, passing 95 % exact match within 120 s of CPU time on one CPU thread",
)


def training_seed() -> int:
    """The seed the checks train with: the same in the visible and the hidden check (so that one
    training serves both), derived from the instructor's secret seed by a one-way hash."""
    digest = hashlib.sha256(f"train_reversal_model/{config.secret_seed()}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000


def reversal_test_sets(g: torch.Generator, per_length: int) -> list[torch.Tensor]:
    """One LongTensor (per_length, L) of random sources for each length L from MIN_LEN to MAX_LEN."""
    return [torch.randint(4, VOCAB_SIZE, (per_length, length), generator=g) for length in range(MIN_LEN, MAX_LEN + 1)]


@train_reversal_model.cases
def _(g, hidden):
    return []  # no stored comparison: the property below trains the model and judges it


def _per_length(test_sets, greedy) -> dict:
    """The fraction of the test sequences of each length that greedy decoding reverses exactly."""
    return {src.shape[1]: float((out == _reversal_targets(src)[1]).all(1).double().mean())
            for src, out in zip(test_sets, greedy)}


def _lengths_text(per_length: dict) -> str:
    return ", ".join(f"{length}: {share:.0%}" for length, share in per_length.items())


def _judge_training(test_sets):
    def judge(results, dtype):
        run = results[0].output
        seconds, greedy, forced = run["seconds"], run["greedy"], run["teacher_forced"]
        if run.get("forbidden"):
            return (f"`train_reversal_model` uses {run['forbidden'][0]}, which this exercise asks you not to use: "
                    f"{train_reversal_model.why_forbidden}.")
        if seconds > TIME_LIMIT:
            return (f"train_reversal_model used {seconds:.0f} s of CPU time to train; it must finish within "
                    f"{TIME_LIMIT:.0f} s of CPU time (one CPU thread). Train for fewer steps (see the hints for "
                    "settings that learn fast).")
        exact = total = copied = symbols = unreversed = longer = right_tokens = positions = 0
        for src, out, pred in zip(test_sets, greedy, forced):
            tgt_in, tgt_out = _reversal_targets(src)
            exact += int((out == tgt_out).all(1).sum())
            total += src.shape[0]
            copied += int((pred[:, 1:] == tgt_in[:, 1:]).sum())  # after <bos>, where the input is a symbol
            symbols += src.numel()
            right_tokens += int((pred == tgt_out).sum())
            positions += tgt_in.numel()
            if src.shape[1] > 1:  # a single symbol reads the same both ways
                unreversed += int((out == torch.cat([src, tgt_out[:, -1:]], 1)).all(1).sum())
                longer += src.shape[0]
        accuracy = exact / total
        if accuracy >= PASS_ACCURACY:
            return None
        if copied / symbols > 0.8:
            return ("The model predicts the very token its decoder is given: it was trained to copy its input. "
                    "Feed the decoder tgt_in ([bos] + target) and compare its output with tgt_out (target + [eos]).")
        if longer and unreversed / longer > 0.5:
            return ("The model writes the sequence back in its original order: train it to produce the source "
                    "reversed (tgt_out = src.flip(1) + [eos]).")
        if right_tokens / positions < 0.3:
            return (f"The model has not learned the task: with the right previous tokens given, it still predicts "
                    f"only {right_tokens / positions:.0%} of the next tokens. Check that each training step calls "
                    "optimizer.zero_grad(), loss.backward() and optimizer.step(), and that the loss goes down.")
        per_length = _per_length(test_sets, greedy)
        loss = sum(run["loss"]) / len(run["loss"]) if run.get("loss") else None
        found = (f"Greedy decoding reverses {accuracy:.0%} of the {total} test sequences exactly (by length: "
                 f"{_lengths_text(per_length)}); at least {PASS_ACCURACY:.0%} must come out right."
                 + (f" Its cross-entropy on the test sequences, with the right previous tokens given, is {loss:.3f}."
                    if loss is not None else ""))
        learned = [length for length, share in per_length.items() if share >= 0.9]
        failed = [length for length, share in per_length.items() if share < 0.5]
        if learned and failed:
            return (found + f" It has learned some lengths and not others ({', '.join(map(str, failed))}): train on "
                    f"every length from MIN_LEN to MAX_LEN ({MIN_LEN} to {MAX_LEN}), in every batch (hint 2 shows "
                    "how to mix them, padded with PAD_ID).")
        return found + " Train for more steps, check the learning rate and its warm-up, and plot the loss (see the hints)."
    return judge


def _passed(results) -> str:
    """What a passing training check says: how well the model did, and the CPU time it took."""
    run = results[0].output
    greedy = run["greedy"]
    total = sum(out.shape[0] for out in greedy)
    return (f"greedy decoding reverses {run['exact'] / total:.0%} of {total} test sequences exactly; "
            f"training took {run['seconds']:.1f} s of CPU time, the limit is {TIME_LIMIT:.0f} s")


train_reversal_model.summary = _passed


@train_reversal_model.prop(f"after at most {TIME_LIMIT:.0f} s of CPU time of training on one CPU thread, greedy decoding reverses "
                           f"at least {PASS_ACCURACY:.0%} of the test sequences exactly")
def _(g):
    test_sets = reversal_test_sets(g, TEST_PER_LENGTH)
    seed = training_seed()
    label = (f"train_reversal_model({seed}), then greedy decoding of {sum(len(t) for t in test_sets)} test sequences "
             f"of {MIN_LEN} to {MAX_LEN} symbols")
    return [Case(label, (seed, test_sets))], _judge_training(test_sets)


# The mistakes below are models that behave as the result of each mistake would, made without
# training (see the module's docstring).
def _one_hot_logits(ids: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Logits (B, T, VOCAB_SIZE) that put all the probability on ``ids`` (B, T)."""
    return 10.0 * F.one_hot(ids, VOCAB_SIZE).to(model.out_proj.weight.dtype)


@train_reversal_model.mistake("returns the model and more", expect="should return the trained Transformer")
def returns_a_tuple(ref):
    return lambda seed: (ref.Transformer(VOCAB_SIZE, VOCAB_SIZE), [2.6, 1.2, 0.7])


@train_reversal_model.mistake("forgot to train", expect="has not learned the task")
def untrained(ref):
    return lambda seed: ref.Transformer(VOCAB_SIZE, VOCAB_SIZE)


@train_reversal_model.mistake("built for a smaller vocabulary", expect="src_vocab = tgt_vocab = VOCAB_SIZE")
def vocabulary_too_small(ref):
    return lambda seed: ref.Transformer(VOCAB_SIZE - 4, VOCAB_SIZE - 4)


@train_reversal_model.mistake("trained on tgt_out as the decoder's input", expect="trained to copy its input")
def copies_its_input(ref):
    class Copier(ref.Transformer):
        def decode(self, tgt, memory, src):
            return _one_hot_logits(tgt, self)
    return lambda seed: Copier(VOCAB_SIZE, VOCAB_SIZE)


@train_reversal_model.mistake("trained on the source unreversed", expect="writes the sequence back in its original order")
def unreversed_target(ref):
    class Echo(ref.Transformer):
        def decode(self, tgt, memory, src):
            source_then_eos = torch.cat([src, torch.full_like(src[:, :1], EOS_ID)], 1)
            steps = min(tgt.shape[1], source_then_eos.shape[1])
            logits = _one_hot_logits(source_then_eos[:, :steps], self)
            return torch.cat([logits, logits[:, -1:].expand(-1, tgt.shape[1] - steps, -1)], 1)
    return lambda seed: Echo(VOCAB_SIZE, VOCAB_SIZE)


@train_reversal_model.mistake("trains with the built-in cross-entropy", expect="uses torch.nn.functional.cross_entropy")
def builtin_loss(ref):
    def wrong(seed):
        model = ref.Transformer(VOCAB_SIZE, VOCAB_SIZE)
        src, tgt_in, tgt_out = ref.make_reversal_batch(4, 3, VOCAB_SIZE, torch.Generator().manual_seed(seed))
        F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten()).backward()
        return model
    return wrong


@train_reversal_model.mistake("trained on short sequences only", expect="It has learned some lengths and not others")
def short_sequences_only(ref):
    class Short(ref.Transformer):
        """Right on sources of up to 3 symbols; on longer ones it ends at once (eos), as a model that never
        saw them might."""

        def decode(self, tgt, memory, src):
            answer = torch.cat([src.flip(1), torch.full_like(src[:, :1], EOS_ID)], 1)
            if src.shape[1] > 3:
                answer = torch.full_like(answer, EOS_ID)
            steps = min(tgt.shape[1], answer.shape[1])
            logits = _one_hot_logits(answer[:, :steps], self)
            return torch.cat([logits, logits[:, -1:].expand(-1, tgt.shape[1] - steps, -1)], 1)
    return lambda seed: Short(VOCAB_SIZE, VOCAB_SIZE)
