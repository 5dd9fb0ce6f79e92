"""Chapter 14: images as sequences of patches, and the patch embedding of a Vision Transformer.

The catalogue of wrong versions is written on top of the reference (passed in as ``ref``):
a wrong patch order is the reference's output rearranged, a wrong embedding is the
reference module with its output or its weights changed.
"""
from __future__ import annotations

import math

import einops
import torch
import torch.nn.functional as F
from torch import nn

from .. import forbidden as capability
from ..calling import MODULE
from ..cases import add_mistake, changed_output, gradients_flow, gradients_reach, linear_weight, randn, shapes, with_forward
from ..spec import Case, Exercise

ASSIGNMENT = "ch14_vision"
# ---------------------------------------------------------------------------------- patchify
patchify = Exercise(
    "patchify", ASSIGNMENT, forbidden=(capability.UNFOLD, capability.CONVOLUTION),
    why_forbidden="the point is to see patches as a rearrangement of the image, with einops",
    points=(2, 2), difficulty=2, minutes=15,
    task="`(B, C, H, W)` → `(B, N, C*p*p)`: row-major patches, each flattened as `(c, ph, pw)`, with one `einops.rearrange`; unfold is not allowed",
)


def _patch_case(images, patch_size, note=""):
    return Case(shapes(images=images, patch_size=patch_size) + note, (images, patch_size))


@patchify.cases
def _(g, hidden):
    if not hidden:
        # Two channels, 2x2 patches, a wide image: every catalogued mistake gives a different answer here.
        return [_patch_case(randn(g, 2, 2, 4, 6), 2), _patch_case(randn(g, 1, 3, 4, 4), 2),
                _patch_case(randn(g, 2, 1, 6, 6), 3)]
    channels_last = randn(g, 2, 4, 4, 3).permute(0, 3, 1, 2)
    return [
        _patch_case(randn(g, 3, 3, 8, 12), 4),
        _patch_case(randn(g, 1, 1, 6, 9), 3, " (one image, one channel)"),
        _patch_case(randn(g, 2, 3, 4, 4), 1, " (patch_size 1: every pixel is a patch)"),
        _patch_case(randn(g, 2, 2, 5, 5), 5, " (one patch covers the image)"),
        _patch_case(channels_last, 2, " (non-contiguous images, channels-last in memory)"),
    ]


@patchify.prop("patchify only moves numbers: an integer image keeps its dtype and every pixel appears once")
def _(g):
    images = torch.randint(0, 256, (2, 3, 4, 6), generator=g, dtype=torch.uint8)

    def judge(results, dtype):
        got = results[0].output
        expected = F.unfold(images.double(), kernel_size=2, stride=2).transpose(1, 2)
        if not isinstance(got, torch.Tensor) or got.dtype != torch.uint8:
            kind = got.dtype if isinstance(got, torch.Tensor) else type(got).__name__
            return (f"patchify of a uint8 image {tuple(images.shape)} should return uint8 patches (a rearrangement "
                    f"changes no number and no dtype), but it returned {kind}.")
        if tuple(got.shape) != tuple(expected.shape) or not torch.equal(got.cpu().double(), expected):
            return (f"patchify of a uint8 image {tuple(images.shape)} with patch_size=2 should give patches of shape "
                    f"{tuple(expected.shape)} holding exactly the image's pixels, but yours differ.")
        return None
    return [Case(f"a uint8 image {tuple(images.shape)}, patch_size=2", (images, 2))], judge


@patchify.prop("gradients flow back to the images")
def _(g):
    images = randn(g, 1, 2, 4, 4)
    return [Case(shapes(images=images, patch_size=2), (images, 2), grad=True)], gradients_reach({"args.0": "images"})


def _pixels_flattened_as(ref, pattern: str):
    """A wrong patchify: each patch's pixels, as (channel, row, column), flattened by the einops ``pattern``."""
    def change(patches, images, patch_size):
        return einops.rearrange(patches.unflatten(-1, (images.shape[1], patch_size, patch_size)), pattern)
    return changed_output(ref.patchify, change)


@patchify.mistake("the patches are in column-major order (down the first column, then the next). "
                  "Go along the first row of patches first: patch n is at row n // (W/p), column n % (W/p).")
def column_major(ref):
    def wrong(images, patch_size):
        patches = ref.patchify(images, patch_size)
        rows, cols = images.shape[-2] // patch_size, images.shape[-1] // patch_size
        return einops.rearrange(patches, "b (h w) d -> b (w h) d", h=rows, w=cols)
    return wrong


@patchify.mistake("each patch is flattened as (row, column, channel), channels last; this course flattens it as "
                  "(channel, row, column), the order of an image's own axes (C, H, W).")
def channels_last(ref):
    return _pixels_flattened_as(ref, "b n c p1 p2 -> b n (p1 p2 c)")


@patchify.mistake("the rows within each patch are read column by column: flatten a patch as (c, ph, pw), "
                  "row after row, like the image itself.")
def transposed_patches(ref):
    return _pixels_flattened_as(ref, "b n c p1 p2 -> b n (c p2 p1)")


@patchify.mistake("the patches take pixels spaced H/p apart instead of p x p squares of neighbouring pixels: in the "
                  "pattern, write (h p1) with the patch index h first, not (p1 h).")
def strided_pixels(ref):
    def wrong(images, patch_size):
        regrouped = einops.rearrange(images, "b c (p1 h) (p2 w) -> b c (h p1) (w p2)", p1=patch_size, p2=patch_size)
        return ref.patchify(regrouped, patch_size)
    return wrong


@patchify.mistake("the image is reshaped without moving any axis, so a 'patch' is a run of consecutive pixels along "
                  "the rows, not a p x p square. Split H and W into (patches, p) and reorder the axes.")
def reshape_only(ref):
    def wrong(images, patch_size):
        batch, channels, height, width = images.shape
        return images.reshape(batch, (height // patch_size) * (width // patch_size), channels * patch_size ** 2)
    return wrong


@patchify.mistake("calls unfold", expect="uses torch.nn.functional.unfold")
def builtin(ref):
    return lambda images, patch_size: F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)


# ---------------------------------------------------------------------------- PatchEmbedding
PatchEmbedding = Exercise(
    "PatchEmbedding", ASSIGNMENT, call=MODULE,
    forbidden=(capability.CONVOLUTION, capability.UNFOLD),
    why_forbidden="the point is to build the patch embedding from patchify and nn.Linear",
    points=(2, 3), difficulty=2, minutes=25,
    task="an `nn.Module` with `proj` (`nn.Linear(C*p*p, d_model)`), `cls_token` `(1, 1, D)` and `pos_embedding` `(1, N+1, D)`; `forward(images)` → `(B, N+1, D)`, class token first, positions added; `nn.Conv2d` is not allowed",
)


def _embedding_case(g, batch, channels, height, width, patch_size, d_model, note=""):
    n_patches = (height // patch_size) * (width // patch_size)
    images = randn(g, batch, channels, height, width)
    state = {
        "proj.weight": linear_weight(g, d_model, channels * patch_size ** 2),
        "proj.bias": randn(g, d_model, scale=0.1),
        "cls_token": randn(g, 1, 1, d_model),
        "pos_embedding": randn(g, 1, n_patches + 1, d_model, scale=0.5),
    }
    label = (f"PatchEmbedding(in_channels={channels}, patch_size={patch_size}, d_model={d_model}, "
             f"n_patches={n_patches}) on {shapes(images=images)}{note}")
    return Case(label, (images,), init=(channels, patch_size, d_model, n_patches), state=state)


@PatchEmbedding.cases
def _(g, hidden):
    if not hidden:
        # The first case has C*p*p == d_model, so that multiplying by proj.weight untransposed runs and can be named.
        return [_embedding_case(g, 2, 1, 4, 4, 2, 4), _embedding_case(g, 2, 3, 4, 6, 2, 8),
                _embedding_case(g, 1, 1, 8, 8, 4, 5)]
    return [_embedding_case(g, 3, 2, 4, 4, 2, 8), _embedding_case(g, 2, 3, 8, 12, 4, 16),
            _embedding_case(g, 1, 1, 5, 5, 5, 6, " (one patch)"), _embedding_case(g, 2, 2, 3, 3, 1, 4, " (patch_size 1)")]


@PatchEmbedding.prop("proj is nn.Linear(C*p*p, d_model); cls_token (1, 1, D) and pos_embedding (1, N+1, D) are parameters")
def _(g):
    expected_parameters = {"cls_token": [1, 1, 8], "pos_embedding": [1, 7, 8]}

    def judge(results, dtype):
        structure = results[0].structure
        layer = structure.get("modules", {}).get("proj")
        if layer is None or layer["type"] != "Linear":
            return f"PatchEmbedding(3, 2, 8, 6).proj should be an nn.Linear, but it is {layer['type'] if layer else 'missing'}."
        if layer["repr"] != "in_features=12, out_features=8, bias=True":
            return ("PatchEmbedding(3, 2, 8, 6).proj should be Linear(in_features=12, out_features=8, bias=True): "
                    f"a patch holds C*p*p = 3*2*2 = 12 numbers; it is Linear({layer['repr']}).")
        parameters = structure.get("parameters", {})
        for name, shape in expected_parameters.items():
            if parameters.get(name) != shape:
                found = f"shape {tuple(parameters[name])}" if name in parameters else "not an nn.Parameter of the module"
                return (f"PatchEmbedding(3, 2, 8, 6).{name} should be an nn.Parameter of shape {tuple(shape)}, "
                        f"but it is {found}.")
        return None
    return [Case("PatchEmbedding(in_channels=3, patch_size=2, d_model=8, n_patches=6)", init=(3, 2, 8, 6),
                 inspect=True)], judge


@PatchEmbedding.prop("the first token, the class token plus position 0, is the same for every image")
def _(g):
    case = _embedding_case(g, 3, 1, 4, 4, 2, 6)

    def judge(results, dtype):
        out = results[0].output
        first = out[:, 0].detach().cpu().double()
        if not torch.allclose(first, first[:1].expand_as(first), atol=1e-6):
            return ("Token 0 of the output should be the class token plus pos_embedding[:, 0], the same for every "
                    "image of the batch; yours changes with the image. Put the class token first, before the patches.")
        return None
    return [case], judge


PatchEmbedding.prop("gradients reach the images, proj, cls_token and pos_embedding",
                    lambda g: gradients_flow(_embedding_case(g, 2, 1, 4, 4, 2, 4),
                                             {"args.0": "images", "params.proj.weight": "proj.weight",
                                              "params.cls_token": "cls_token", "params.pos_embedding": "pos_embedding"}))


def _with_output(ref, change):
    """A wrong PatchEmbedding: the reference's output, changed by ``change(module, output)``."""
    return with_forward(ref.PatchEmbedding, lambda self, right, images: change(self, right(images)))


def _with_weight(ref, change):
    """A wrong PatchEmbedding: the reference run with ``proj.weight`` replaced by ``change(weight, module)``."""
    class Wrong(ref.PatchEmbedding):
        def forward(self, images):
            saved = self.proj.weight.data
            self.proj.weight.data = change(saved, self)
            try:
                return super().forward(images)
            finally:
                self.proj.weight.data = saved
    return Wrong


@PatchEmbedding.mistake("the class token comes after the patches; it should be token 0, in front of them.")
def cls_last(ref):
    def change(module, out):
        tokens = out - module.pos_embedding
        return torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1) + module.pos_embedding
    return _with_output(ref, change)


@PatchEmbedding.mistake("the position embeddings are added to the patches only; add all N+1 of them, position 0 "
                        "to the class token too.")
def no_position_on_cls(ref):
    def change(module, out):
        return torch.cat([out[:, :1] - module.pos_embedding[:, :1], out[:, 1:]], dim=1)
    return _with_output(ref, change)


@PatchEmbedding.mistake("the position embeddings are not added.")
def no_positions(ref):
    return _with_output(ref, lambda module, out: out - module.pos_embedding)


@PatchEmbedding.mistake("the patches are multiplied by proj.weight directly (x @ W); an nn.Linear computes x @ W.T + b. "
                        "Call self.proj(patches).")
def transposed_weight(ref):
    return _with_weight(ref, lambda weight, module: weight.T)


def _pixels_as_patchified(ref, patches: torch.Tensor, images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The image whose (reference) patchify gives ``patches``: each pixel put where patchify takes it from."""
    where = ref.patchify(torch.arange(images[0].numel(), device=images.device).reshape(1, *images.shape[1:]),
                         patch_size).flatten()
    pixels = torch.empty_like(images).flatten(1)
    pixels[:, where] = patches.flatten(1)
    return pixels.reshape(images.shape)


def _with_patchify(ref, key: str):
    """The reference PatchEmbedding fed the patches of the catalogued wrong ``patchify`` ``key``."""
    wrong_patchify = next(m for m in patchify.mistakes if m.key == key).build(ref)

    class Wrong(ref.PatchEmbedding):
        def forward(self, images):
            patches = wrong_patchify(images, self.patch_size)
            return super().forward(_pixels_as_patchified(ref, patches, images, self.patch_size))
    return Wrong


def _patchify_blamed(how: str) -> str:
    return (f"the patches reach `proj` {how}, as a wrong `patchify` makes them. If your PatchEmbedding calls "
            "your `patchify`, that is the likely cause: make `patchify`'s own check pass first.")


# The mistakes of a PatchEmbedding fed a catalogued wrong patchify's patches: (its key, the patchify mistake's
# key, how the patches reach `proj`).
for key, patchify_key, how in (
    ("channels_last_patches", "channels_last",
     "flattened channels last, as (row, column, channel), not patchify's (channel, row, column) order"),
    ("column_major_patches", "column_major", "in column-major order (down the first column of patches first)"),
    ("transposed_patches", "transposed_patches", "with each patch read column by column"),
    ("strided_patches", "strided_pixels", "made of pixels spaced H/p apart, not p x p squares of neighbours"),
    ("reshaped_patches", "reshape_only",
     "as runs of consecutive pixels (a reshape without moving axes), not p x p squares"),
):
    add_mistake(PatchEmbedding, key, _patchify_blamed(how), lambda ref, wrong=patchify_key: _with_patchify(ref, wrong))


@PatchEmbedding.mistake("the patch embeddings are multiplied by sqrt(d_model), as token embeddings are in chapter 10; "
                        "a ViT adds the positions to proj(patches) as they are.")
def scaled_like_tokens(ref):
    def change(module, out):
        tokens = out - module.pos_embedding
        scale = math.sqrt(out.shape[-1])
        return torch.cat([tokens[:, :1], tokens[:, 1:] * scale], dim=1) + module.pos_embedding
    return _with_output(ref, change)


@PatchEmbedding.mistake("uses a convolution", expect="uses torch.nn.Conv2d")
def builtin(ref):
    class Wrong(ref.PatchEmbedding):
        def forward(self, images):
            conv = nn.Conv2d(images.shape[1], self.proj.out_features, self.patch_size, stride=self.patch_size)
            conv.to(images)
            conv(images)
            return super().forward(images)
    return Wrong
