"""Chapter 09 exercises: supervised fine-tuning on chat dialogs (paper §4.1.3).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch09

or run the last cell of notebooks/09_sft.ipynb. Shapes: b batch, s sequence, v vocabulary. Use torch only; do not
import `minillama.posttrain` (that is the answer key).
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: F401  (F.log_softmax, F.cross_entropy are allowed)
from torch import Tensor

IGNORE_INDEX = -100


def assistant_loss_mask(roles: list[str]) -> Tensor:
    """Per-token roles from `ChatFormat.encode_dialog_with_roles` -> bool (s,): True for the tokens the assistant
    wrote (its content and its closing eot/eom), False for bos, headers, system, user and tool tokens."""
    # Hints: ChatFormat labels headers and <|begin_of_text|> "format", and every other token with the role of the
    # message it belongs to (the closing <|eot_id|> included). Only the assistant's own tokens are targets.
    raise NotImplementedError("Exercise 9.1: assistant_loss_mask")


def sft_labels(tokens: Tensor, loss_mask: Tensor) -> Tensor:
    """tokens (s,) or (b, s), loss_mask same shape -> labels: labels[t] = tokens[t+1] when loss_mask[t+1], else -100;
    the last position is always -100 (nothing follows it)."""
    # Hints: position t predicts token t+1, so both the token and the mask are read one step ahead;
    # start from torch.full_like(tokens, IGNORE_INDEX) and fill labels[..., :-1] with torch.where.
    raise NotImplementedError("Exercise 9.2: sft_labels")


def sequence_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """logits (b, s, v), labels (b, s) with -100 where ignored -> (b,): the *sum* of log p(labels[t]) over the
    labelled positions."""
    # Hints: log_softmax over the vocabulary, torch.gather the label's entry (clamp -100 to 0 first so gather
    # works), zero the ignored positions, then sum over the sequence. A sum, not a mean.
    raise NotImplementedError("Exercise 9.3: sequence_logprobs")


def document_causal_mask(doc_ids: Tensor) -> Tensor:
    """doc_ids (b, s) (-1 on padding) -> bool (b, 1, s, s): query i may see key j iff j <= i and both are in the same
    document; a padding position sees only itself."""
    # Hints: compare doc_ids[:, :, None] with doc_ids[:, None, :]; AND a lower-triangular matrix (torch.tril);
    # OR the identity so padding rows are not empty; add the head axis with [:, None].
    raise NotImplementedError("Exercise 9.4: document_causal_mask")
