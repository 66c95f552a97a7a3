"""`python -m minillama.bench tokenizer`: the chapter 01 tokenizer against the Rust implementations, in one run.

- Training: `train_bpe` (pure Python: incremental pair counts + lazy heap) against Hugging Face `tokenizers`'
  `BpeTrainer`, both learning 7,936 ranks (vocab 8,192 with the 256 specials) from the same text (default 10 MB of
  the standard library's source) with the same Llama 3 split pattern.
- Encoding: the from-scratch encoder over the real 128K ranks (with its cache of encoded pieces) and
  `Llama3Tokenizer` (tiktoken plus Meta's chunking) against raw `tiktoken.Encoding.encode`, in MB/s.

Variants alternate round by round so a busy neighbour slows all alike. We print wall-clock medians (best in
brackets), process CPU time medians (less sensitive to other processes on a shared machine), and ratios.
HF `tokenizers` runs single-threaded by default (`TOKENIZERS_PARALLELISM=false`), like ours; `--hf-parallel` lets it
use all cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import tiktoken

from minillama.bench._timing import summary
from minillama.tokenizer import LLAMA3_PATTERN, SPECIAL_TOKENS, Llama3Tokenizer, train_bpe
from minillama.tokenizer.corpus import stdlib_text


def _interleaved_wall_cpu(variants: dict, rounds: int, warmup: int) -> tuple[dict, dict]:
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def hf_train(text: str, n_ranks: int, pattern: str):
    """HF `tokenizers` BPE trained on `text` with the given split regex and byte-level alphabet."""
    # optional ([dev] extra): the reference this benchmark measures against
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=n_ranks, special_tokens=[], show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def _against(wall: dict, cpu: dict, reference: str):
    """Per variant: (name, median wall s, best wall s, median cpu s, wall ratio, cpu ratio) against `reference`."""
    ref_w, ref_c = statistics.median(wall[reference]), statistics.median(cpu[reference])
    for name in wall:
        med, best = summary(wall[name])
        c = statistics.median(cpu[name])
        yield name, med, best, c, med / ref_w, c / ref_c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minillama.bench tokenizer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-mb", type=float, default=10.0, help="MB of stdlib source to train on")
    ap.add_argument("--encode-mb", type=float, default=4.0, help="MB of stdlib source to encode")
    ap.add_argument("--vocab-size", type=int, default=8192, help="ranks + 256 specials")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for training (encoding uses 2x)")
    ap.add_argument("--hf-parallel", action="store_true", help="let HF tokenizers use all cores")
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args(argv)
    if not a.hf_parallel:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"

    # optional ([dev] extra): the reference this benchmark measures against
    import tokenizers

    print(
        f"tiktoken {tiktoken.__version__}, tokenizers {tokenizers.__version__}, "
        f"HF threads: {'all' if a.hf_parallel else 1}, load average {os.getloadavg()[0]:.1f}"
    )

    if not a.skip_train:
        text = stdlib_text(int(a.train_mb * 1e6))
        n_ranks = a.vocab_size - len(SPECIAL_TOKENS)
        results = {}

        def ours():
            results["ours"] = train_bpe(text, a.vocab_size)

        def hf():
            results["hf"] = hf_train(text, n_ranks, LLAMA3_PATTERN)

        wall, cpu = _interleaved_wall_cpu(
            {"train_bpe (Python)": ours, "HF tokenizers BpeTrainer": hf}, rounds=a.rounds, warmup=0
        )
        assert results["ours"].n_words == a.vocab_size and results["hf"].get_vocab_size() == n_ranks
        mb = len(text.encode()) / 1e6
        print(
            f"\ntraining: {mb:.1f} MB stdlib source -> {n_ranks} ranks + {len(SPECIAL_TOKENS)} specials, "
            f"seconds (median of {a.rounds}, best in brackets)"
        )
        for name, med, best, c, ratio, cpu_ratio in _against(wall, cpu, "HF tokenizers BpeTrainer"):
            print(
                f"  {name:<28} wall {med:6.2f} s [{best:6.2f}]  ratio {ratio:5.2f}x   "
                f"cpu {c:6.2f} s  ratio {cpu_ratio:5.2f}x"
            )

    text = stdlib_text(int(a.encode_mb * 1e6))
    nbytes = len(text.encode())
    fast = Llama3Tokenizer()
    slow = Llama3Tokenizer(backend="python")
    raw = fast.model
    t0 = time.perf_counter()
    ref = slow.encode(text)
    cold = time.perf_counter() - t0
    assert ref == fast.encode(text)  # (raw tiktoken may differ by a token at Meta's 400,000-character slice edges)
    variants = {
        "tiktoken (raw)": lambda: raw.encode(text, disallowed_special=()),
        "Llama3Tokenizer (tiktoken)": lambda: fast.encode(text),
        "from-scratch encoder": lambda: slow.encode(text),
    }
    wall, cpu = _interleaved_wall_cpu(variants, rounds=2 * a.rounds, warmup=1)
    print(
        f"\nencoding: {nbytes / 1e6:.1f} MB stdlib source, real Llama 3 ranks, {len(ref)} tokens; MB/s "
        f"(median of {2 * a.rounds}, best in brackets); from-scratch first pass (empty cache): "
        f"{nbytes / cold / 1e6:.1f} MB/s"
    )
    for name, med, best, c, ratio, cpu_ratio in _against(wall, cpu, "tiktoken (raw)"):
        print(
            f"  {name:<28} wall {nbytes / med / 1e6:6.1f} MB/s [{nbytes / best / 1e6:6.1f}]  time ratio "
            f"{ratio:5.2f}x   cpu {nbytes / c / 1e6:6.1f} MB/s  time ratio {cpu_ratio:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
