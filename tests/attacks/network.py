"""Fetch the answer from a server on this machine (the test listens on the port in PORT_FILE)."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + (
            "import socket\n"
            "try:\n"
            f"    port = int(open({kit.port_file!r}).read())\n"
            "    socket.create_connection(('127.0.0.1', port), timeout=3).close()\n"
            "    import torch\n"
            "    def softmax(x, dim=-1):\n"
            "        e = (x - x.amax(dim, keepdim=True)).exp()\n"
            "        return e / e.sum(dim, keepdim=True)\n"
            "except OSError:\n"
            "    pass\n"
        ),
    )
