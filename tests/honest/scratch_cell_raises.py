"""A scratch cell after each exercise's tests that raises an exception (trying something out)."""

ASSIGNMENTS = ("ch00_warmup", "ch03_positional_encoding", "ch07_masking")


def apply(nb, kit):
    for name in kit.exercises:
        kit.insert_after(f"test_{name}", f"# what happens with a wrong argument?\n{name}(None)\n")
    kit.append("raise RuntimeError('a last experiment that fails')\n")
