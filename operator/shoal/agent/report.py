"""Where the agent's reports go (its pod's annotation, or a file in local runs) and the GPU figures
it adds to them (NVML)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Gauge

from shoal.agent.protocol import write_json
from shoal.vocab import ANN_PROGRESS

log = logging.getLogger("shoal.agent")
GPU_UTIL = Gauge("shoal_agent_gpu_utilization_percent", "GPU utilization (NVML)", ["gpu"])
GPU_MEM = Gauge("shoal_agent_gpu_memory_used_bytes", "GPU memory in use (NVML)", ["gpu"])
GPU_MEM_TOTAL = Gauge("shoal_agent_gpu_memory_total_bytes", "GPU memory there is (NVML)", ["gpu"])


class Reporter(Protocol):
    def report(self, progress: dict[str, Any]) -> None: ...


class FileReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def report(self, progress: dict[str, Any]) -> None:
        write_json(self.path, progress)


class PodReporter:
    """Patches this pod's annotation; the agent's Role allows exactly that pod."""

    def __init__(self, namespace: str, name: str) -> None:
        from shoal.k8s.client import Kube
        from shoal.k8s.paths import pods_path

        self.kube = Kube()
        self.path = pods_path(namespace, name)

    def report(self, progress: dict[str, Any]) -> None:
        from shoal.k8s.client import ApiError

        try:
            self.kube.merge_patch(
                self.path, {"metadata": {"annotations": {ANN_PROGRESS: json.dumps(progress)}}}
            )
        except (ApiError, OSError) as exc:
            log.warning("progress report failed: %s", exc)


class GpuSampler:
    """The GPUs this container sees, through NVML (nvidia-ml-py, in shoal[train]); `unavailable` says
    why there are none: no library (no driver mounted), no device, or NVML's own error."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.count = 0
        self.unavailable: str | None = None
        try:
            import pynvml  # type: ignore[import-untyped]

            pynvml.nvmlInit()
            self.count = int(pynvml.nvmlDeviceGetCount())
            self.nvml = pynvml
        except ImportError:
            self.unavailable = "nvidia-ml-py is not installed"
        except Exception as exc:  # pynvml.NVMLError_*: no driver, no library, no device
            self.unavailable = f"NVML: {exc}"
        if self.unavailable:
            log.info("no GPU figures: %s", self.unavailable)

    def sample(self) -> list[dict[str, float]]:
        out = []
        for i in range(self.count):
            h = self.nvml.nvmlDeviceGetHandleByIndex(i)
            util = float(self.nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            info = self.nvml.nvmlDeviceGetMemoryInfo(h)
            mem = float(info.used)
            GPU_UTIL.labels(str(i)).set(util)
            GPU_MEM.labels(str(i)).set(mem)
            GPU_MEM_TOTAL.labels(str(i)).set(float(info.total))
            out.append({"gpu": i, "utilization": util, "memoryUsed": mem})
        return out
