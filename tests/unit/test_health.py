"""What /healthz (kopf's probe, OperatorRuntime.health) reports, and when it fails."""

from __future__ import annotations

import asyncio
import threading
import time

import kubernetes
import pytest

from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.runtime.operator import OperatorRuntime


def test_health_reports_workers_and_fails_when_a_task_that_must_run_has_ended() -> None:
    def reconcile(_: str, name: str) -> float | None:
        if name == "bad":
            raise RuntimeError("always")
        return None

    async def scenario() -> None:
        kube = Kube(api=kubernetes.client.ApiClient(), async_events=True)  # no request is made
        runtime = OperatorRuntime(Settings(workers=2, leader_election=False), kube)
        runtime.register("ContainerPool", "containerpools", reconcile)
        runtime.start()
        try:
            runtime.enqueue("ContainerPool", "ns", "bad")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not runtime.queues["ContainerPool"]._failures:
                await asyncio.sleep(0.01)
            report = runtime.health()
            pools = report["workers"]["ContainerPool"]
            assert (pools["alive"], pools["restarts"]) == (2, 0), pools
            assert report["leader"] is True and report["eventBacklog"] == 0
            # A supervisor task that ended (here: cancelled) is a part that must run and does not.
            runtime.tasks[0].cancel()
            await asyncio.gather(runtime.tasks[0], return_exceptions=True)
            with pytest.raises(RuntimeError, match="stopped: workers-ContainerPool"):
                runtime.health()
        finally:
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            runtime.executor.shutdown(wait=False, cancel_futures=True)

    asyncio.run(scenario())


def test_health_fails_when_the_event_recorder_thread_is_gone() -> None:
    kube = Kube(api=kubernetes.client.ApiClient(), async_events=True)
    runtime = OperatorRuntime(Settings(workers=1, leader_election=False), kube)
    assert runtime.health()["workers"] == {}
    kube._poster = threading.Thread(target=lambda: None)  # a poster that has ended
    kube._poster.start()
    kube._poster.join()
    with pytest.raises(RuntimeError, match="event recorder"):
        runtime.health()
