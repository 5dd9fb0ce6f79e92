"""ch02 in another style: counting with a dict, scatter for one-hot, index_select for the lookup."""

ASSIGNMENTS = ("ch02_embeddings",)


def apply(nb, kit):
    kit.replace(
        "build_vocab",
        (
            "def build_vocab(corpus, min_freq=1):\n"
            "    counts = {}\n"
            "    for line in corpus:\n"
            "        for token in line.lower().split():\n"
            "            counts[token] = counts.get(token, 0) + 1\n"
            "    vocab = {'<pad>': 0, '<unk>': 1, '<bos>': 2, '<eos>': 3}\n"
            "    kept = [t for t in counts if counts[t] >= min_freq and t not in vocab]\n"
            "    for token in sorted(kept, key=lambda t: (-counts[t], t)):\n"
            "        vocab[token] = len(vocab)\n"
            "    return vocab\n"
        ),
    )
    kit.replace(
        "one_hot",
        (
            "def one_hot(ids, vocab_size):\n"
            "    out = torch.zeros(*ids.shape, vocab_size, device=ids.device)\n"
            "    return out.scatter_(-1, ids.unsqueeze(-1), 1.0)\n"
        ),
    )
    kit.replace(
        "embedding_lookup",
        (
            "def embedding_lookup(ids, weight):\n"
            "    rows = torch.index_select(weight, 0, ids.reshape(-1))\n"
            "    return rows.reshape(*ids.shape, weight.shape[-1])\n"
        ),
    )
    kit.replace(
        "nearest_neighbors",
        (
            "def nearest_neighbors(E, idx, k):\n"
            "    sims = cosine_similarity_matrix(E)[idx]\n"
            "    order = [int(i) for i in torch.argsort(sims, descending=True, stable=True) if int(i) != idx]\n"
            "    return torch.tensor(order[:k], dtype=torch.long, device=E.device)\n"
        ),
    )
