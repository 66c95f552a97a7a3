"""Chat dialogs as training rows: the assistant-only loss mask, sequence log-probabilities, and packing (paper §4.1.3).

SFT in Llama 3 is "cross-entropy on the target tokens, with prompt tokens masked". Here a dialog is rendered by
`minillama.chat_format.ChatFormat.encode_dialog_with_roles`, which labels every token with the role that *produced* it
(`format` for `<|begin_of_text|>` and the headers). Only assistant tokens (its words and its closing eot/eom, so it
learns when to stop) become targets:

    tokens : <bot> <sh> user <eh> \\n\\n Sort : 3 1 <eot> <sh> assistant <eh> \\n\\n 1 3 <eot>
    roles  : fmt   fmt  fmt  fmt  fmt   user ...   user  fmt ...                fmt   ast ast ast
    labels : position t predicts token t+1, so labels[t] = tokens[t+1] where roles[t+1] == "assistant", else -100

Packing puts several short dialogs in one row of `seq_len` tokens. A block-diagonal causal mask keeps each dialog
from attending to the others, and the labels never cross a dialog boundary, so a packed row trains exactly like its
dialogs one by one. RoPE only sees position *differences* inside a dialog, so a dialog's offset in the row does not
change its logits (checked in tests/test_posttrain_data.py).

Shapes: b batch, s sequence, v vocabulary, d model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from minillama.model import Transformer

IGNORE_INDEX = -100  # label of a position that is not trained (F.cross_entropy's default ignore_index)


# ----------------------------------------------------------------------------------------------------------------
# Masks and labels
# ----------------------------------------------------------------------------------------------------------------
def assistant_mask(roles: list[str]) -> list[bool]:
    """True for tokens the assistant produced (content, python_tag, eot/eom); False for prompts and headers."""
    return [r == "assistant" for r in roles]


def sft_labels(tokens: Tensor, target_mask: Tensor) -> Tensor:
    """Next-token labels with everything but the targets ignored. tokens (..., s), target_mask (..., s) bool ->
    labels (..., s): labels[t] = tokens[t+1] when target_mask[t+1], else IGNORE_INDEX (always at the last position)."""
    if tokens.shape != target_mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and target_mask {tuple(target_mask.shape)} differ in shape")
    labels = torch.full_like(tokens, IGNORE_INDEX)
    nxt = tokens[..., 1:]
    labels[..., :-1] = torch.where(target_mask[..., 1:].bool(), nxt, torch.full_like(nxt, IGNORE_INDEX))
    return labels


def formatting_mask(tokens: Tensor, formatting_ids: list[int] | Tensor) -> Tensor:
    """True where a token is a formatting token (headers, eot/eom...; paper §4.1.4: masked out of DPO). (..., s)."""
    ids = torch.as_tensor(
        list(formatting_ids) if not isinstance(formatting_ids, Tensor) else formatting_ids,
        dtype=tokens.dtype,
        device=tokens.device,
    )
    return torch.isin(tokens, ids)


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(labels[t] | ...) at every position, 0 where labels == IGNORE_INDEX.
    logits (b, s, v), labels (b, s) -> (b, s)."""
    keep = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = torch.gather(logp, -1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * keep


def sequence_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum of the response tokens' log-probabilities (a *sum*, not a mean: DPO compares whole sequences).
    logits (b, s, v), labels (b, s) with IGNORE_INDEX outside the response -> (b,)."""
    return token_logprobs(logits, labels).sum(dim=-1)


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled (target) positions only: the SFT loss."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Example:
    """One rendered dialog: token ids and which of them are targets (same length)."""

    tokens: list[int]
    target: list[bool]

    def __post_init__(self):
        if len(self.tokens) != len(self.target):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.target)} target flags")


def render(chat_format, messages: list[dict], exclude_ids: tuple[int, ...] = (), allow_empty: bool = False) -> Example:
    """A finished dialog -> Example whose targets are the assistant's tokens (minus any id in `exclude_ids`, e.g.
    eot/eom for DPO's formatting mask). An empty answer leaves no target once eot is excluded: allowed only with
    `allow_empty` (DPO: its log-probability is then 0)."""
    tokens, roles = chat_format.encode_dialog_with_roles(messages)
    target = [m and t not in exclude_ids for m, t in zip(assistant_mask(roles), tokens)]
    if not any(target) and not allow_empty:
        raise ValueError("the dialog has no assistant tokens to train on; end it with an assistant message")
    return Example(tokens, target)


def dialog_formatting_ids(chat_format) -> tuple[int, ...]:
    """Ids of the formatting tokens DPO masks out of responses: begin_of_text, header start/end, eot and eom."""
    return (
        chat_format.bos_id,
        chat_format.start_header_id,
        chat_format.end_header_id,
        chat_format.eot_id,
        chat_format.eom_id,
    )


# ----------------------------------------------------------------------------------------------------------------
# Padding and packing
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Training rows: tokens (b, s), labels (b, s) with IGNORE_INDEX off-target, doc_ids (b, s) (-1 on padding)."""

    tokens: Tensor
    labels: Tensor
    doc_ids: Tensor

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "labels": self.labels, "doc_ids": self.doc_ids}

    @property
    def n_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def pad_examples(examples: list[Example], pad_id: int = 0, seq_len: int | None = None) -> Batch:
    """One example per row, right-padded to the longest (or `seq_len`)."""
    if not examples:
        raise ValueError("no examples to batch")
    longest = max(len(e.tokens) for e in examples)
    seq_len = seq_len or longest
    if longest > seq_len:
        raise ValueError(f"an example has {longest} tokens, more than seq_len={seq_len}; raise seq_len")
    tokens = torch.full((len(examples), seq_len), pad_id, dtype=torch.long)
    target = torch.zeros((len(examples), seq_len), dtype=torch.bool)
    doc_ids = torch.full((len(examples), seq_len), -1, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.tokens)
        tokens[i, :n] = torch.tensor(e.tokens)
        target[i, :n] = torch.tensor(e.target)
        doc_ids[i, :n] = 0
    return Batch(tokens, sft_labels(tokens, target), doc_ids)


def pack_examples(examples: list[Example], seq_len: int, pad_id: int = 0) -> Batch:
    """Pack dialogs into rows of `seq_len` tokens, first fit in the given order; a dialog never spans two rows."""
    rows: list[list[Example]] = []
    used: list[int] = []
    for e in examples:
        n = len(e.tokens)
        if n > seq_len:
            raise ValueError(f"a dialog has {n} tokens, more than seq_len={seq_len}; raise seq_len")
        for r, u in enumerate(used):
            if u + n <= seq_len:
                rows[r].append(e)
                used[r] += n
                break
        else:
            rows.append([e])
            used.append(n)
    return pack_rows(rows, seq_len, pad_id)


def pack_rows(rows: list[list[Example]], seq_len: int, pad_id: int = 0) -> Batch:
    """Lay out rows of dialogs (each row's dialogs must fit in `seq_len`) as padded tensors.

    Labels are computed per dialog, so the last token of one dialog never predicts the first token of the next.
    """
    tokens = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), IGNORE_INDEX, dtype=torch.long)
    doc_ids = torch.full((len(rows), seq_len), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        pos = 0
        for d, e in enumerate(row):
            t = torch.tensor(e.tokens)
            n = len(t)
            if pos + n > seq_len:
                raise ValueError(f"row {r} holds {pos + n} tokens, more than seq_len={seq_len}")
            tokens[r, pos : pos + n] = t
            labels[r, pos : pos + n] = sft_labels(t, torch.tensor(e.target))
            doc_ids[r, pos : pos + n] = d
            pos += n
    return Batch(tokens, labels, doc_ids)


def document_causal_mask(doc_ids: Tensor) -> Tensor:
    """(b, s) document ids -> (b, 1, s, s) bool attention mask: query i sees key j iff j <= i and both are in the
    same document. A padding position (-1) sees only itself, so no softmax row is empty."""
    s = doc_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=doc_ids.device).tril()
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    eye = torch.eye(s, dtype=torch.bool, device=doc_ids.device)
    return ((same & causal) | eye)[:, None]


# ----------------------------------------------------------------------------------------------------------------
# Forward passes with a packing mask
# ----------------------------------------------------------------------------------------------------------------
def hidden_states(model: Transformer, tokens: Tensor, doc_ids: Tensor | None = None) -> Tensor:
    """The model's final normed hidden states (b, s, d), with a document mask when `doc_ids` is given; the reward
    model reads its score from these states."""
    mask = document_causal_mask(doc_ids) if doc_ids is not None else None
    return model.hidden_states(tokens, mask=mask)


def forward(model: Transformer, tokens: Tensor, doc_ids: Tensor | None = None) -> Tensor:
    """Logits (b, s, v) in float32; with `doc_ids`, packed dialogs do not see each other."""
    return model(tokens, mask=document_causal_mask(doc_ids) if doc_ids is not None else None)


def target_logprobs(model: Transformer, tokens: Tensor, labels: Tensor, doc_ids: Tensor | None = None) -> Tensor:
    """`token_logprobs(forward(model, tokens, doc_ids), labels)`, but the output layer and softmax run only at the
    labelled positions (a fifth of a chat row here), which is most of the cost with a large vocabulary. -> (b, s)."""
    h = hidden_states(model, tokens, doc_ids)
    keep = labels != IGNORE_INDEX
    logits = model.output(h[keep]).float()  # (n_targets, v)
    picked = torch.log_softmax(logits, dim=-1).gather(-1, labels[keep].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(labels.shape, dtype=picked.dtype, device=picked.device)
    return out.masked_scatter(keep, picked)


def sft_loss(model: Transformer, batch: Batch | dict) -> Tensor:
    """Mean cross-entropy over the assistant tokens of a (packed) batch (a Batch or its `as_dict()`)."""
    if isinstance(batch, dict):
        batch = Batch(batch["tokens"], batch["labels"], batch["doc_ids"])
    n = (batch.labels != IGNORE_INDEX).sum().clamp(min=1)
    return -target_logprobs(model, batch.tokens, batch.labels, batch.doc_ids).sum() / n


# ----------------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------------
def plot_loss_mask(
    tokens: list[int],
    target: list[bool],
    tokenizer,
    ax=None,
    per_line: int = 12,
    title: str = "SFT loss mask: trained tokens in green",
):
    """Draw a dialog token by token, trained tokens (targets) green, masked ones grey; returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    n_lines = (len(tokens) + per_line - 1) // per_line
    if ax is None:
        _, ax = plt.subplots(figsize=(per_line * 0.95, 0.45 * n_lines + 0.6))
    for i, (tok, on) in enumerate(zip(tokens, target)):
        text = tokenizer.decode([tok]).replace("\n", "\\n")
        text = text.replace("<|start_header_id|>", "<sh>").replace("<|end_header_id|>", "<eh>")
        text = text.replace("<|begin_of_text|>", "<bot>").replace("<|eot_id|>", "<eot>").replace("<|eom_id|>", "<eom>")
        x, y = i % per_line, -(i // per_line)
        ax.text(
            x,
            y,
            text if text.strip() else repr(text)[1:-1] or "␣",
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round,pad=0.2", fc="#8fd18f" if on else "#e0e0e0", ec="none"),
        )
    ax.set_xlim(-0.6, per_line - 0.4)
    ax.set_ylim(-n_lines + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return ax.figure


def plot_document_mask(doc_ids: Tensor, ax=None, title: str = "packed row: who may attend to whom"):
    """The (s, s) attention mask of one packed row as an image (white = may attend); returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    mask = document_causal_mask(doc_ids.reshape(1, -1))[0, 0]
    ax.imshow(mask.numpy(), cmap="gray", interpolation="nearest")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(title, fontsize=10)
    return ax.figure
