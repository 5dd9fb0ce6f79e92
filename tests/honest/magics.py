"""IPython magics: %%time on the solution cells, %timeit, %precision and a shell escape in scratch cells."""

ASSIGNMENTS = ("ch00_warmup", "ch03_positional_encoding", "ch07_masking")


def apply(nb, kit):
    for name in kit.exercises:
        kit.replace(name, "%%time\n" + kit.source(name))
    kit.insert_before(kit.exercises[0], "%precision 3\n%time x = sum(range(1000))\n!echo hello from the shell\n")
    kit.append("%timeit -n 1 -r 1 sum(range(100))\n%who\n")
