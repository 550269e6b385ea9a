"""The container's own CPU and memory limits, as the kernel enforces them (cgroup v2), exported beside
the trainer's use so an alert can compare the two. Hand-written: psutil reports use, not limits, and a
pod's limits reach the container only as these two files (or the downward API, which the user's
template would have to wire)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Gauge

CGROUP = Path("/sys/fs/cgroup")
CPU_LIMIT = Gauge("shoal_agent_cpu_limit_cores", "The container's CPU limit (cgroup v2 cpu.max)")
MEMORY_LIMIT = Gauge("shoal_agent_memory_limit_bytes", "The container's memory limit (cgroup v2 memory.max)")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_limits(root: Path = CGROUP) -> tuple[float | None, int | None]:
    """(CPU cores, memory bytes) the container may use; None for no limit, or no cgroup v2 to say."""
    cpu: float | None = None
    quota = (_read(root / "cpu.max") or "max").split()
    if len(quota) == 2 and quota[0] != "max":
        try:
            cpu = int(quota[0]) / int(quota[1])
        except (ValueError, ZeroDivisionError):
            cpu = None
    memory: int | None = None
    text = _read(root / "memory.max")
    if text and text != "max":
        try:
            memory = int(text)
        except ValueError:
            memory = None
    return cpu, memory


def export_limits(root: Path = CGROUP) -> tuple[float | None, int | None]:
    """Set the limit gauges (only those there are: no series means no limit, and no alert on it)."""
    cpu, memory = cgroup_limits(root)
    if cpu is not None:
        CPU_LIMIT.set(cpu)
    if memory is not None:
        MEMORY_LIMIT.set(memory)
    return cpu, memory
