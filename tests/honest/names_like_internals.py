"""Variables and helpers that share names with grading internals: modules, builtins, showtraceback, check."""

ASSIGNMENTS = ("ch02_embeddings", "ch06_multi_head_attention")


def apply(nb, kit):
    kit.insert_before(
        kit.exercises[0],
        (
            "modules = ['embeddings', 'attention']\n"
            "builtins = {'len': len, 'sum': sum}\n"
            "\n"
            "\n"
            "class Notes:\n"
            "    def __init__(self):\n"
            "        self.modules = list(modules)\n"
            "\n"
            "    def showtraceback(self):\n"
            "        return 'my own method, not IPython\\'s'\n"
            "\n"
            "\n"
            "def set_custom_exc(message):\n"
            "    return message.upper()\n"
            "\n"
            "\n"
            "print(Notes().modules, Notes().showtraceback(), set_custom_exc('ok'), builtins['len'](modules))\n"
        ),
    )
