"""Comments at the top of every solution cell that name forbidden functions and grading internals."""

ASSIGNMENTS = (
    "ch00_warmup",
    "ch01_why_attention",
    "ch02_embeddings",
    "ch03_positional_encoding",
    "ch04_scaled_dot_product",
    "ch05_attention_types",
    "ch06_multi_head_attention",
    "ch07_masking",
    "ch08_residual_norm_ffn",
)
COMMENT = (
    "# I did not use any builtins here\n"
    "# note: sys.modules is not touched, nor torch.softmax, F.scaled_dot_product_attention or nn.MultiheadAttention\n"
    "# (no TorchFunctionMode, __torch_function__, set_custom_exc, showtraceback, AUTOGRADER_SEED)\n"
)


def apply(nb, kit):
    for name in kit.exercises:
        kit.replace(name, COMMENT + kit.source(name))
