"""A scratch cell that prints tens of thousands of lines, and a solution cell that prints while it runs."""

ASSIGNMENTS = ("ch01_why_attention", "ch05_attention_types")


def apply(nb, kit):
    kit.insert_before(kit.exercises[0], "for i in range(40_000):\n    print('line', i, 'of my debugging output')\n")
    first = kit.exercises[0]
    kit.replace(first, kit.source(first) + "\nprint('defined', " + repr(first) + ")\n")
