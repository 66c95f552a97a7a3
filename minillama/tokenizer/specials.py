"""Llama 3's 256 special tokens, in the order Meta appends them after the 128,000 BPE ranks (paper §3.2).

A course tokenizer appends the same 256 strings after its own ranks, so the chat format, SFT, DPO and tool use run
unchanged on an 8K vocabulary and on the real 128K one: only the offset (the number of ranks) differs.
"""

from __future__ import annotations

#: The named special tokens, ids `n_ranks + 0` .. `n_ranks + 11` (128000..128011 for Llama 3.1+).
NAMED_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",  # BOS
    "<|end_of_text|>",  # EOS, ends a document in pre-training
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",  # pad_id
    "<|step_id|>",
    "<|start_header_id|>",  # opens a role header: <|start_header_id|>user<|end_header_id|>
    "<|end_header_id|>",
    "<|eom_id|>",  # end of message: the model wants a tool result back
    "<|eot_id|>",  # end of turn
    "<|python_tag|>",  # the model is calling a built-in tool
    "<|image|>",
)

#: All 256 special tokens in id order: the 12 named ones, then `<|reserved_special_token_2|>` ..
#: `<|reserved_special_token_245|>`.
SPECIAL_TOKENS: tuple[str, ...] = NAMED_SPECIAL_TOKENS + tuple(
    f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(NAMED_SPECIAL_TOKENS))
)

#: Number of BPE ranks in the real Llama 3 tokenizer; its special tokens start at this id.
LLAMA3_NUM_RANKS = 128_000


def special_token_ids(n_ranks: int, special_tokens=SPECIAL_TOKENS) -> dict[str, int]:
    """`{token: id}` with the special tokens appended after `n_ranks` ordinary tokens, as Llama 3 does."""
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError("special_tokens has duplicates; give each special token string once")
    return {token: n_ranks + i for i, token in enumerate(special_tokens)}
