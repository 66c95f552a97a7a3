"""Cost formulas (minillama.parallel.costs) against independent counts: parameters on the meta device, FACTS.md §9's
Table 4 arithmetic (with the DP=4 typo), and the ring-collective factors written out."""

import pytest

from minillama.herd import parameter_count
from minillama.model.config import ModelArgs
from minillama.parallel import costs


@pytest.mark.parametrize(
    "preset,expected",
    [("llama3.1-8b", 8_030_261_248), ("llama3.1-70b", 70_553_706_496), ("llama3.1-405b", 405_853_388_800)],
)
def test_parameter_formula(preset, expected):
    """The closed-form count equals FACTS.md §1 and the model built on the meta device."""
    a = ModelArgs.from_preset(preset)
    assert costs.total_params(a) == expected == parameter_count(a)


def test_table4_consistency_and_typo():
    """GPUs = TP·CP·PP·DP and tokens = DP·batch·seq ≈ 16M hold for every row with DP=8 in the last row; the
    printed DP=4 breaks both; TFLOPs/MFU gives the same ~1 PFLOP/s BF16 peak for every row."""
    for lay, _printed in zip(costs.TABLE4, costs.TABLE4_PRINTED_DP):
        c = costs.table4_check(lay)
        assert c["gpus = tp·cp·pp·dp"] == lay.gpus
        assert abs(c["tokens = dp·batch·seq"] - 16 * 2**20) == 0
        assert 970 < c["implied peak TFLOP/s = TFLOPs / MFU"] < 1010
    bad = costs.table4_check(costs.TABLE4[2], printed_dp=4)
    assert bad["gpus = tp·cp·pp·dp"] == 8192 != costs.TABLE4[2].gpus
    assert bad["tokens = dp·batch·seq"] == 8 * 2**20


def test_memory_and_comm_formulas():
    """Spot checks written out: FSDP optimizer state is 12 bytes/param over DP·CP; DP traffic is (n-1)/n of
    6 bytes/param; TP traffic is 4 all-reduces of a (seq, d) bf16 activation per layer and micro-batch."""
    a = ModelArgs.from_preset("llama3.1-405b")
    lay = costs.TABLE4[0]
    p = costs.params_per_gpu(a, lay.tp, lay.pp)
    assert p == 8 * ((costs.layer_params(a) - 2 * a.dim) // 8 + 2 * a.dim)  # a middle rank: 8 of 128 slots
    mem = costs.memory_per_gpu(a, lay)
    assert mem["optimizer (fp32 master + Adam m, v; sharded)"] == pytest.approx(12 * p / 64)
    comm = costs.comm_per_gpu(a, lay)
    assert comm["DP (bf16 all-gather + fp32 reduce-scatter)"] == pytest.approx(63 / 64 * 6 * p)
    tp_bytes = 32 * 8 * 4 * (2 * 7 / 8) * 8192 * a.dim * 2
    assert comm["TP (4 all-reduces per layer and micro-batch)"] == pytest.approx(tp_bytes)
    assert comm["CP (K/V all-gather + gradient reduce-scatter)"] == 0
    rows = costs.cost_rows("llama3.1-8b", virtual_stages=2)
    assert len(rows) == 3 and rows[0]["bubble"] == pytest.approx(15 / 64)
