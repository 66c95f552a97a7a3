"""Test-wide settings: one torch thread per process (CI shares 2 cores), float32 matmuls at full precision."""

import pytest
import torch

torch.set_num_threads(1)
torch.set_float32_matmul_precision("highest")


@pytest.fixture
def tmp_folder(tmp_path):
    return tmp_path
