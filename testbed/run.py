"""`make run` on the local test bed: the operator plus what makes the samples come alive.

- the operator, pointed at the test bed's Prometheus;
- a demo workload: `job_queue_depth{queue="functions"}` (the sample queue scaler's metric) exported
  to Prometheus, rising and falling over a 6-minute cycle, so `kubectl get wscale,deploy -w` shows
  the scaler following it up and down;
- a local kubelet (testbed/kubelet.py): TrainingSession pods run here for real, so the sample session
  trains and its TensorBoard and stream open on localhost.

Everything stops with the operator (Ctrl-C).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time

from shoal.k8s.client import Kube
from testbed.cluster import KUBECONFIG, PORTS, PROM_TARGETS
from testbed.kubelet import LocalKubelet
from testbed.localpod import free_port

CYCLE = 360.0  # seconds


def queue_depth(t: float, cycle: float = CYCLE, peak: float = 60.0) -> float:
    """Per sixth of the cycle: 0; rising over two sixths to `peak`; `peak`; falling; 0."""
    x = (t % cycle) / (cycle / 6)
    if x < 1 or x >= 5:
        return 0.0
    if x < 3:
        return float(round(peak * (1 - math.cos(math.pi * (x - 1) / 2)) / 2))
    if x < 4:
        return peak
    return float(round(peak * (1 + math.cos(math.pi * (x - 4))) / 2))


class DemoQueue:
    def __init__(self, cycle: float = CYCLE) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.gauge = Gauge(
            "job_queue_depth", "Jobs waiting (the demo workload)", ["queue"], registry=self.registry
        )
        self.port = free_port()
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        PROM_TARGETS.mkdir(parents=True, exist_ok=True)
        self.target = PROM_TARGETS / "shoal-demo-queue.json"
        self.target.write_text(
            f'[{{"targets": ["127.0.0.1:{self.port}"], "labels": {{"job": "queue-exporter"}}}}]'
        )
        self.started = time.monotonic()
        self.cycle = cycle
        self.stopped = threading.Event()
        threading.Thread(target=self._run, name="demo-queue", daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(1.0):
            self.gauge.labels("functions").set(queue_depth(time.monotonic() - self.started, self.cycle))

    def stop(self) -> None:
        self.stopped.set()
        self.target.unlink(missing_ok=True)
        self.server.shutdown()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    prometheus = f"http://127.0.0.1:{PORTS['prometheus']}"
    demo = DemoQueue()
    kubelet = LocalKubelet(Kube()).start()
    print(
        f'the local test bed: Prometheus {prometheus}, demo queue job_queue_depth{{queue="functions"}}\n'
        "  (0 -> 60 -> 0 jobs every 6 minutes), session pods run here. Try:\n"
        f"  export KUBECONFIG={KUBECONFIG}\n"
        "  kubectl apply -f manifests/samples/ && kubectl get wscale,deploy,tsess -w",
        flush=True,
    )
    env = {**os.environ, "SHOAL_PROMETHEUS_URL": os.environ.get("SHOAL_PROMETHEUS_URL", prometheus)}
    operator = subprocess.Popen([sys.executable, "-m", "shoal"], env=env)
    signal.signal(signal.SIGTERM, lambda *_: operator.terminate())
    try:
        return operator.wait()
    except KeyboardInterrupt:
        operator.terminate()
        return operator.wait()
    finally:
        kubelet.stop()
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
