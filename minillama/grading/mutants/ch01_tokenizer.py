"""Common mistakes for the chapter 01 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import re
from collections import Counter

import regex

from minillama.grading.reference import ch01_tokenizer as ref

P = ref.LLAMA3_PATTERN


def _pretok_whitespace(text):  # splits on spaces like str.split, losing the spaces and punctuation rules
    return re.findall(r"\S+|\s+", text)


def _pretok_case_sensitive(text):  # drops the (?i:...) group: "DON'T" no longer splits like "don't"
    return regex.findall(P.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "'s|'t|'re|'ve|'m|'ll|'d"), text)


def _pretok_ascii_letters(text):  # ASCII letter classes instead of \p{L} / \p{N} (what `re` users often write)
    return regex.findall(P.replace(r"\p{L}", "A-Za-z").replace(r"\p{N}", "0-9"), text)


def _count_unweighted(words):  # ignores how often each word occurs
    out = Counter()
    for w in words:
        out.update(zip(w, w[1:]))
    return dict(out)


def _count_once_per_word(words):  # counts a pair once per word even when it occurs twice in it
    out = Counter()
    for w, c in words.items():
        for p in set(zip(w, w[1:])):
            out[p] += c
    return dict(out)


def _count_across_words(words):  # glues the words together, creating pairs that span two pieces
    seq = [t for w, c in words.items() for _ in range(c) for t in w]
    return dict(Counter(zip(seq, seq[1:])))


def _merge_right_to_left(ids, pair, new_id):  # scans from the right: [5, 5, 5] -> [5, 9]
    out = list(reversed(ref.merge_pair(list(reversed(ids)), (pair[1], pair[0]), new_id)))
    return out


def _merge_first_only(ids, pair, new_id):  # merges only the first occurrence
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return ids


def _merge_overlapping(ids, pair, new_id):  # forgets to skip the second element after a merge
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
        i += 1
    return out


def _train(text, n_merges, tie="smallest", weighted=True):
    words = Counter(tuple(p.encode()) for p in regex.findall(P, text))
    merges = []
    for k in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c if weighted else 1
        if not pairs:
            break
        top = max(pairs.values())
        tied = [p for p, c in pairs.items() if c == top]
        best = min(tied) if tie == "smallest" else max(tied) if tie == "largest" else tied[0]
        merges.append(best)
        new = Counter()
        for w, c in words.items():
            new[tuple(ref.merge_pair(list(w), best, 256 + k))] += c
        words = new
    return merges


def _train_largest_tie(text, n_merges):  # breaks ties towards the largest pair
    return _train(text, n_merges, tie="largest")


def _train_unweighted(text, n_merges):  # counts each distinct piece once, ignoring its frequency
    return _train(text, n_merges, weighted=False)


def _train_no_pretokenize(text, n_merges):  # trains on the raw byte stream, so merges cross word boundaries
    seq = list(text.encode())
    merges = []
    for k in range(n_merges):
        pairs = Counter(zip(seq, seq[1:]))
        if not pairs:
            break
        top = max(pairs.values())
        best = min(p for p, c in pairs.items() if c == top)
        merges.append(best)
        seq = ref.merge_pair(seq, best, 256 + k)
    return merges


def _encode_first_mergeable(piece, ranks):  # merges the leftmost mergeable pair instead of the lowest-rank one
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while True:
        for i in range(len(parts) - 1):
            if parts[i] + parts[i + 1] in ranks:
                parts[i : i + 2] = [parts[i] + parts[i + 1]]
                break
        else:
            return [ranks[p] for p in parts]


def _encode_longest_prefix(piece, ranks):  # greedy longest-known-prefix matching, not BPE
    out, i = [], 0
    while i < len(piece):
        j = len(piece)
        while piece[i:j] not in ranks:
            j -= 1
        out.append(ranks[piece[i:j]])
        i = j
    return out


def _encode_bytes_only(piece, ranks):  # forgets to merge: one token per byte
    return [ranks[piece[i : i + 1]] for i in range(len(piece))]


def _decode_per_token(ids, vocab):  # decodes each token alone, breaking characters split over tokens
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _decode_ignore(ids, vocab):  # errors="ignore" silently drops invalid bytes
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")


def _decode_latin1(ids, vocab):  # decodes bytes as Latin-1: never fails, but mangles every non-ASCII character
    return b"".join(vocab[i] for i in ids).decode("latin-1")


MUTANTS = {
    "pretokenize-whitespace-split": {"pretokenize": _pretok_whitespace},
    "pretokenize-case-sensitive-contractions": {"pretokenize": _pretok_case_sensitive},
    "pretokenize-ascii-letters": {"pretokenize": _pretok_ascii_letters},
    "count-pairs-unweighted": {"count_pairs": _count_unweighted},
    "count-pairs-once-per-word": {"count_pairs": _count_once_per_word},
    "count-pairs-across-words": {"count_pairs": _count_across_words},
    "merge-right-to-left": {"merge_pair": _merge_right_to_left},
    "merge-first-only": {"merge_pair": _merge_first_only},
    "merge-overlapping": {"merge_pair": _merge_overlapping},
    "train-tie-largest-pair": {"train_merges": _train_largest_tie},
    "train-unweighted-pieces": {"train_merges": _train_unweighted},
    "train-without-pretokenization": {"train_merges": _train_no_pretokenize},
    "encode-leftmost-mergeable": {"encode_piece": _encode_first_mergeable},
    "encode-longest-prefix": {"encode_piece": _encode_longest_prefix},
    "encode-bytes-only": {"encode_piece": _encode_bytes_only},
    "decode-per-token": {"decode": _decode_per_token},
    "decode-errors-ignore": {"decode": _decode_ignore},
    "decode-latin1": {"decode": _decode_latin1},
}
