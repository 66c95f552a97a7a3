"""`python -m minillama.bench generate`: KV-cache greedy decoding, minillama vs `transformers` `generate`.

Both models hold the same weights; both decode greedily the same number of new tokens (no early stop), and we
check they produce the same tokens. Rounds alternate between the two; we print medians, best-of and the ratio.
"""

from __future__ import annotations

import argparse

import torch

from minillama.bench._common import add_common_args, bench_models, print_rates, setup
from minillama.bench._timing import interleaved
from minillama.generate import generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minillama.bench generate", description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="weights and cache of both models (decoding reads every weight once per token, so bf16 halves the bytes)",
    )
    a = ap.parse_args(argv)
    setup(a)
    model, hf = bench_models()
    dtype = getattr(torch, a.dtype)
    model, hf = model.to(dtype).eval(), hf.to(dtype).eval()
    prompt = torch.randint(
        0, model.args.vocab_size, (a.batch, a.prompt_len), generator=torch.Generator().manual_seed(0)
    )

    def ours():
        return generate(model, prompt.tolist(), a.new_tokens)

    @torch.inference_mode()
    def theirs():
        out = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=a.new_tokens,
            min_new_tokens=a.new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        return out[:, a.prompt_len :].tolist()

    same = ours() == theirs()
    if a.dtype == "float32":
        assert same, "minillama and transformers disagree on the greedy tokens"
    elif not same:
        print("note: in bfloat16 the two greedy continuations differ (rounding), so the timed work differs slightly")
    variants = {"minillama": ours, "transformers": theirs}
    if a.compile:
        compiled = torch.compile(model)
        variants["minillama+compile"] = lambda: generate(compiled, prompt.tolist(), a.new_tokens)
    times = interleaved(variants, rounds=a.rounds)
    n = a.batch * a.new_tokens
    print(
        f"greedy decoding, {a.dtype}, batch {a.batch}, prompt {a.prompt_len}, {a.new_tokens} new tokens, "
        f"{model.num_params() / 1e6:.1f}M parameters; tokens/s (median of {a.rounds}, best in brackets)"
    )
    print_rates(times, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
