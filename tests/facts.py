"""Numbers from ../shared/FACTS.md that several tests check (copied from the fact sheet, not computed here)."""

# §1, "params (computed)" from llama-models 0.3.0; the 3.2 models counted with tied embeddings, as their HF configs say.
PARAMS = {
    "llama3.1-8b": 8_030_261_248,
    "llama3.1-70b": 70_553_706_496,
    "llama3.1-405b": 405_853_388_800,
    "llama3.2-1b": 1_235_814_400,
    "llama3.2-3b": 3_212_749_824,
}
# §1: the 3.2 models counted untied (these match the torchtitan PR #1376 log).
UNTIED = {"llama3.2-1b": 1_498_482_688, "llama3.2-3b": 3_606_752_256}
