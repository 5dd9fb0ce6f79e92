"""check(...) run again in extra cells, before and after the test cells, and in a loop."""

ASSIGNMENTS = ("ch01_why_attention", "ch05_attention_types", "ch08_residual_norm_ffn")


def apply(nb, kit):
    for name in kit.exercises:
        kit.insert_after(name, f"from autograder import check\ncheck({name!r}, {name})\n")
        kit.insert_after(f"test_{name}", f"import autograder\nautograder.check({name!r}, {name})\n")
    names = ", ".join(kit.exercises)
    kit.append(
        f"from autograder import check\nfor name, impl in zip({kit.exercises!r}, [{names}]):\n    check(name, impl)\n"
    )
