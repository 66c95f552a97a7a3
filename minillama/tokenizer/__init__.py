"""Chapter 01: the tokenizer (paper §3.2). Byte-level BPE with Llama 3's split pattern, trained from scratch or
loaded from Meta's 128K `tokenizer.model`, with Llama 3's 256 special tokens appended after the ranks.

- `train_bpe(corpus, vocab_size)`: learn merges (pure Python, incremental counts + lazy heap).
- `BPETokenizer`: the from-scratch encoder/decoder over a rank table; `save` / `load` in Meta's format.
- `Llama3Tokenizer`: the real ranks (from `llama-models`), tiktoken-backed, same interface and ids.
"""

from minillama.tokenizer.bpe import BPETokenizer, bpe_merge, load_ranks, save_ranks
from minillama.tokenizer.llama3 import Llama3Tokenizer, llama3_model_path
from minillama.tokenizer.pretokenize import LLAMA3_PATTERN, chunks_for_encoding, pretokenize, split_long_runs
from minillama.tokenizer.specials import LLAMA3_NUM_RANKS, NAMED_SPECIAL_TOKENS, SPECIAL_TOKENS, special_token_ids
from minillama.tokenizer.train import count_pairs, count_pieces, learn_merges, merge_pair, train_bpe

__all__ = [
    "BPETokenizer",
    "Llama3Tokenizer",
    "LLAMA3_NUM_RANKS",
    "LLAMA3_PATTERN",
    "NAMED_SPECIAL_TOKENS",
    "SPECIAL_TOKENS",
    "bpe_merge",
    "chunks_for_encoding",
    "count_pairs",
    "count_pieces",
    "learn_merges",
    "llama3_model_path",
    "load_ranks",
    "merge_pair",
    "pretokenize",
    "save_ranks",
    "special_token_ids",
    "split_long_runs",
    "train_bpe",
]
