"""HEARTH_DEVICE: auto-detection and each runtime's GPU settings, with the GPU probes faked.

No GPU is available where the suite runs: the CPU path is the one exercised
for real (the live servers run with the default, `auto`, and land on the CPU).
"""

from __future__ import annotations

import pytest

from hearth.engines.device import (
    CPU,
    Device,
    DeviceUnavailable,
    ctranslate2_device,
    llama_gpu_layers,
    nvidia_gpus,
    onnx_providers,
    resolve_device,
)

GPU = Device("cuda", "NVIDIA H200")


def test_auto_picks_the_gpu_when_the_driver_reports_one() -> None:
    assert resolve_device("auto", probe=lambda: ["NVIDIA H200", "NVIDIA H200"]) == GPU
    assert resolve_device("auto", probe=list) == CPU


def test_cpu_never_probes_and_cuda_requires_a_gpu() -> None:
    def probe() -> list[str]:
        raise AssertionError("cpu must not probe the GPU")

    assert resolve_device("cpu", probe=probe) == CPU
    assert resolve_device("cuda", probe=lambda: ["NVIDIA H200"]) == GPU
    with pytest.raises(DeviceUnavailable, match="HEARTH_DEVICE=cuda"):
        resolve_device("cuda", probe=list)


def test_the_real_probe_answers_without_a_driver() -> None:
    """On a machine without the CUDA driver the probe finds nothing instead of failing."""
    gpus = nvidia_gpus()
    assert isinstance(gpus, list)
    assert resolve_device("auto") == (Device("cuda", gpus[0]) if gpus else CPU)


def test_onnx_runtime_gets_the_cuda_provider_only_when_it_has_one() -> None:
    assert onnx_providers(CPU) == ["CPUExecutionProvider"]
    assert onnx_providers(GPU, lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(GPU, lambda: ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_ctranslate2_runs_whisper_on_cuda_in_int8_float16() -> None:
    assert ctranslate2_device(CPU) == ("cpu", "int8")
    assert ctranslate2_device(GPU, lambda: 1) == ("cuda", "int8_float16")
    assert ctranslate2_device(GPU, lambda: 0) == ("cpu", "int8")


def test_llama_offloads_every_layer_or_the_catalogs_count_on_a_gpu_build() -> None:
    gpu_build = [{"type": "GGML_BACKEND_DEVICE_TYPE_CPU"}, {"type": "GGML_BACKEND_DEVICE_TYPE_GPU"}]
    cpu_build = [{"type": "GGML_BACKEND_DEVICE_TYPE_CPU"}]
    assert llama_gpu_layers(CPU, {"n_gpu_layers": 20}) == 0
    assert llama_gpu_layers(GPU, {}, lambda: gpu_build) == 999
    assert llama_gpu_layers(GPU, {"n_gpu_layers": 20}, lambda: gpu_build) == 20
    assert llama_gpu_layers(GPU, {}, lambda: cpu_build) == 0
