"""Test-wide settings: one torch thread per process (CI shares 2 cores), float32 matmuls at full precision; a small
shard folder of code-like documents tokenized byte by byte, shared by the training tests."""

import numpy as np
import pytest
import torch

from minillama.data.corpus import Document
from minillama.data.shards import build_shards

torch.set_num_threads(1)
torch.set_float32_matmul_precision("highest")


@pytest.fixture
def tmp_folder(tmp_path):
    return tmp_path


class ByteTokenizer:
    """One id per UTF-8 byte; BOS/EOS ids above the bytes."""

    n_words, bos_id, eos_id = 302, 300, 301

    def encode(self, text, bos=False, eos=False):
        return list(text.encode("utf-8"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    words = ["def f(x):", "    return x", "import os", "class A:", "self.x = 1", "for i in range(3):"]
    docs = [Document("\n".join(rng.choice(words, size=rng.integers(2, 12))), "test", f"d{i}") for i in range(60)]
    build_shards(docs, ByteTokenizer(), folder, val_fraction=0.1, seed=0)
    return folder
