"""The benchmarks' own bookkeeping: the peak a % of peak is taken against, the tokens a generation counts."""

from __future__ import annotations

import pytest
import torch

from benchmarks.common import half_precision_peak


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0),  # SXM
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0),  # the A100's tensor-core peak is the same on PCIe
    ("NVIDIA H100 PCIe", None),  # 756 dense bf16, not the SXM part's 989
    ("NVIDIA H100 NVL", None),  # 835
    ("NVIDIA H200 NVL", None),
    ("NVIDIA L40S", None),
])
def test_the_peak_is_known_only_for_the_parts_it_was_taken_from(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert half_precision_peak("cuda", "bfloat16") == peak
    assert half_precision_peak("cuda", "float32") is None
    assert half_precision_peak("cpu", "bfloat16") is None
