"""shoal-agent: runs the trainer as a child, relays commands to it and reports its progress.

- Commands arrive as pod annotations (shoal.dev/command, shoal.dev/command-id), which the
  downward API projects into a file; a new id is relayed as a signal to the trainer.
- Progress (the trainer's progress.json, plus the id of the last acknowledged command) is
  reported by patching the pod's shoal.dev/progress annotation, or into a file for local runs.
- CPU, RSS and, when NVML is present, GPU utilization and memory are served for Prometheus.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import psutil
from prometheus_client import Gauge, start_http_server

from shoal.agent.protocol import command_id_file, progress_file, read_json, write_json

log = logging.getLogger("shoal.agent")
ANN_COMMAND = "shoal.dev/command"
ANN_COMMAND_ID = "shoal.dev/command-id"
ANN_PROGRESS = "shoal.dev/progress"

CPU = Gauge("shoal_agent_cpu_percent", "CPU use of the training process tree")
RSS = Gauge("shoal_agent_rss_bytes", "Resident memory of the training process tree")
GPU_UTIL = Gauge("shoal_agent_gpu_utilization_percent", "GPU utilization (NVML)", ["gpu"])
GPU_MEM = Gauge("shoal_agent_gpu_memory_used_bytes", "GPU memory in use (NVML)", ["gpu"])
TIMESTEPS = Gauge("shoal_agent_timesteps", "Timesteps trained so far")


def parse_annotations(text: str) -> dict[str, str]:
    """The downward API's `key="value"` lines (Go-quoted values) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            out[key.strip()] = json.loads(value.strip())
        except ValueError:
            out[key.strip()] = value.strip().strip('"')
    return out


class Reporter(Protocol):
    def report(self, progress: dict[str, Any]) -> None: ...


class FileReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def report(self, progress: dict[str, Any]) -> None:
        write_json(self.path, progress)


class PodReporter:
    """Patches this pod's annotation; needs `patch` on its own pod (the operator grants exactly that)."""

    def __init__(self) -> None:
        from shoal.k8s.client import Kube, pods_path

        self.kube = Kube()
        self.path = pods_path(os.environ["POD_NAMESPACE"], os.environ["POD_NAME"])

    def report(self, progress: dict[str, Any]) -> None:
        from shoal.k8s.client import ApiError

        try:
            self.kube.merge_patch(
                self.path, {"metadata": {"annotations": {ANN_PROGRESS: json.dumps(progress)}}}
            )
        except (ApiError, OSError) as exc:
            log.warning("progress report failed: %s", exc)


class GpuSampler:
    def __init__(self) -> None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self.nvml: Any = pynvml
            self.count = int(pynvml.nvmlDeviceGetCount())
        except Exception:  # no driver, no library: CPU-only node
            self.nvml, self.count = None, 0

    def sample(self) -> list[dict[str, float]]:
        out = []
        for i in range(self.count):
            h = self.nvml.nvmlDeviceGetHandleByIndex(i)
            util = float(self.nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = float(self.nvml.nvmlDeviceGetMemoryInfo(h).used)
            GPU_UTIL.labels(str(i)).set(util)
            GPU_MEM.labels(str(i)).set(mem)
            out.append({"gpu": i, "utilization": util, "memoryUsed": mem})
        return out


class Agent:
    def __init__(self, command: list[str], podinfo: Path, reporter: Reporter, interval: float = 0.5) -> None:
        self.command = command
        self.podinfo = podinfo
        self.reporter = reporter
        self.interval = interval
        self.handled_id = 0
        self.acked_id = 0
        self.last_report: dict[str, Any] | None = None
        self.gpu = GpuSampler()
        self.stopping = False

    def _tree(self, proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
        try:
            root = psutil.Process(proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self, proc: subprocess.Popen[bytes]) -> None:
        cpu = rss = 0.0
        for p in self._tree(proc):
            try:
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        CPU.set(cpu)
        RSS.set(rss)
        self.gpu.sample()

    def _command(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            ann = parse_annotations(self.podinfo.read_text())
        except OSError:
            return
        try:
            cid = int(ann.get(ANN_COMMAND_ID, "0"))
        except ValueError:
            return
        verb = ann.get(ANN_COMMAND, "")
        if cid <= self.handled_id or not verb:
            return
        self.handled_id = cid
        command_id_file().parent.mkdir(parents=True, exist_ok=True)
        command_id_file().write_text(str(cid))
        log.info("command %d: %s", cid, verb)
        if verb == "checkpoint":
            proc.send_signal(signal.SIGUSR1)
        elif verb in ("pause", "stop"):
            self.stopping = True
            proc.send_signal(signal.SIGTERM)

    def _report(self, exit_code: int | None = None) -> None:
        progress = read_json(progress_file()) or {}
        last = progress.get("lastCheckpoint") or {}
        if last.get("commandId"):
            self.acked_id = max(self.acked_id, int(last["commandId"]))
        progress["ack"] = self.acked_id
        if exit_code is not None:
            progress["exitCode"] = exit_code
        TIMESTEPS.set(float(progress.get("timesteps", 0)))
        if progress != self.last_report:
            self.reporter.report(progress)
            self.last_report = progress

    def run(self) -> int:
        proc = subprocess.Popen(self.command)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        while proc.poll() is None:
            self._command(proc)
            self._sample(proc)
            self._report()
            time.sleep(self.interval)
        code = proc.returncode
        self._report(exit_code=code)
        return int(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shoal-agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--podinfo", default=os.environ.get("SHOAL_PODINFO", "/etc/podinfo/annotations"))
    parser.add_argument("--report", choices=["pod", "file"], default=os.environ.get("SHOAL_REPORT", "pod"))
    parser.add_argument("--report-file", default=os.environ.get("SHOAL_REPORT_FILE", "/shoal/report.json"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHOAL_AGENT_PORT", "9400")))
    parser.add_argument("command", nargs="*", help="training command (default: the reference trainer)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.port:
        start_http_server(args.port)
    command = args.command or [sys.executable, "-m", "shoal.agent.trainer"]
    reporter: Reporter = PodReporter() if args.report == "pod" else FileReporter(Path(args.report_file))
    return Agent(command, Path(args.podinfo), reporter).run()


if __name__ == "__main__":
    sys.exit(main())
