"""Build a `transformers.LlamaForCausalLM` with exactly the weights of a minillama model (the outside reference)."""

import tempfile

import torch

from minillama import Transformer, save_hf


def hf_twin(model: Transformer):
    """Export `model` through `save_hf` and load it with `LlamaForCausalLM.from_pretrained`."""
    from transformers import LlamaForCausalLM

    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        hf = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
    return hf.eval()
