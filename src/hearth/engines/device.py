"""Where inference runs: ``HEARTH_DEVICE=auto|cpu|cuda`` turned into each runtime's settings.

``auto`` uses an NVIDIA GPU when the driver reports one, and the CPU
otherwise; ``cuda`` requires one (a clear error at start when there is
none); ``cpu`` never touches the GPU. Each runtime is then asked whether it
can use the GPU at all (a CPU-only build of llama.cpp, ONNX Runtime without
the CUDA provider, CTranslate2 without CUDA) and falls back to the CPU,
saying so, when it cannot:

- llama.cpp offloads ``n_gpu_layers`` layers (catalog option; default all);
- CTranslate2 (Whisper) runs on ``cuda`` with ``int8_float16`` weights;
- ONNX Runtime (Kokoro, embeddings) puts the CUDA provider before the CPU one.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

log = logging.getLogger("hearth.engines")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class DeviceUnavailable(RuntimeError):
    """``HEARTH_DEVICE=cuda`` on a machine without a usable NVIDIA GPU."""


@dataclass(frozen=True)
class Device:
    kind: Literal["cpu", "cuda"]
    name: str  # "CPU", or the GPU's name as the driver gives it

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"


CPU = Device("cpu", "CPU")


def nvidia_gpus() -> list[str]:
    """The names of the NVIDIA GPUs the CUDA driver sees; none when there is no driver."""
    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(library)
            break
        except OSError:
            continue
    else:
        return []
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    names = []
    for index in range(count.value):
        device = ctypes.c_int(0)
        buffer = ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(device), index) == 0 and \
                cuda.cuDeviceGetName(buffer, len(buffer), device) == 0:
            names.append(buffer.value.decode(errors="replace"))
        else:
            names.append(f"CUDA device {index}")
    return names


def resolve_device(setting: str, probe: Callable[[], list[str]] = nvidia_gpus) -> Device:
    """The device ``setting`` means on this machine."""
    if setting == "cpu":
        return CPU
    gpus = probe()
    if gpus:
        return Device("cuda", gpus[0])
    if setting == "cuda":
        raise DeviceUnavailable("HEARTH_DEVICE=cuda, but no NVIDIA GPU is visible (no CUDA driver, "
                                "or no device); use HEARTH_DEVICE=auto or cpu")
    return CPU


@cache
def _warn_once(message: str) -> None:
    log.warning(message)


def onnx_providers(device: Device, available: Callable[[], list[str]] | None = None) -> list[str]:
    """ONNX Runtime's execution providers for ``device``, best first."""
    if not device.is_gpu:
        return [CPU_PROVIDER]
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers
    if CUDA_PROVIDER in available():
        return [CUDA_PROVIDER, CPU_PROVIDER]
    _warn_once("ONNX Runtime has no CUDA provider (install onnxruntime-gpu): Kokoro and the "
               "embedding model stay on the CPU")
    return [CPU_PROVIDER]


def ctranslate2_device(device: Device, cuda_devices: Callable[[], int] | None = None) -> tuple[str, str]:
    """CTranslate2's (device, compute type) for ``device``."""
    if not device.is_gpu:
        return "cpu", "int8"
    if cuda_devices is None:
        import ctranslate2  # type: ignore[import-untyped]

        cuda_devices = ctranslate2.get_cuda_device_count
    if cuda_devices() > 0:
        return "cuda", "int8_float16"
    _warn_once("CTranslate2 sees no CUDA device: Whisper stays on the CPU")
    return "cpu", "int8"


def llama_gpu_layers(device: Device, options: dict[str, Any],
                     devices: Callable[[], list[dict[str, Any]]] | None = None) -> int:
    """Layers llama.cpp offloads: none on the CPU; ``n_gpu_layers`` (default all) on a GPU build."""
    if not device.is_gpu:
        return 0
    if devices is None:
        import xllamacpp

        devices = xllamacpp.get_device_info
    if not any("GPU" in str(d.get("type", "")) for d in devices()):
        _warn_once("this llama.cpp build has no GPU backend (install xllamacpp's CUDA wheel): "
                   "chat models stay on the CPU")
        return 0
    return int(options.get("n_gpu_layers", 999))
