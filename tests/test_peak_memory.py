import pytest
import torch

from pipeline import peak_memory


def test_host_peak_grows_with_an_allocation() -> None:
    before = peak_memory.read()["host_peak_rss_gib"]
    block = bytearray(300 * 1024**2)  # touched: resident, not only reserved
    block[::4096] = b"x" * len(block[::4096])
    after = peak_memory.read()["host_peak_rss_gib"]
    assert after >= before and after > 0.25


def test_cpu_only_records_no_gpu_figure() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    peak_memory.reset()
    assert "gpu_peak_gib" not in peak_memory.read()


@pytest.mark.gpu
def test_gpu_peak_is_per_stage() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    big = torch.empty(512 * 1024**2, dtype=torch.uint8, device="cuda")
    assert peak_memory.read()["gpu_peak_gib"] >= 0.5
    del big
    peak_memory.reset()
    assert peak_memory.read()["gpu_peak_gib"] < 0.5
