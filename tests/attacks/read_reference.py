"""Read the reference solution from the instructor's files and run it."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace(
        "softmax",
        (
            "import glob, json, os\n"
            "def _steal():\n"
            f"    for path in glob.glob({kit.course_root!r} + '/solutions/*/*.ipynb') + glob.glob('../../../solutions/*/*.ipynb') + \\\n"
            "            glob.glob(os.path.expanduser('~') + '/**/*.ipynb', recursive=True):\n"
            "        cells = json.load(open(path))['cells']\n"
            "        for cell in cells:\n"
            "            source = ''.join(cell['source'])\n"
            "            if 'def softmax' in source and 'BEGIN SOLUTION' in source:\n"
            "                namespace = {}\n"
            "                exec('import torch\\n' + source, namespace)\n"
            "                return namespace['softmax']\n"
            "    return lambda x, dim=-1: x\n"
            "softmax = _steal()\n"
        ),
    )
