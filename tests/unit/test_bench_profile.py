"""bench.profile sorts py-spy's raw stacks: a reconcile in a worker thread, kopf's own work, Shoal's
handlers under kopf, start-up imports and the rest each land in their own share."""

from __future__ import annotations

from bench.profile import summarise

RAW = "\n".join(
    [
        # A worker thread: the executor, then the runtime's _reconcile, then the pool reconciler.
        "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);"
        "_reconcile (shoal/runtime/operator.py:103);PoolReconciler.reconcile (shoal/reconcile/pool.py:155);"
        "Kube.create (shoal/k8s/client.py:197) 6",
        # kopf's watch stream, no handler of ours on the stack.
        "run (kopf/_core/reactor/running.py:81);stream (kopf/_cogs/clients/api.py:278) 3",
        # A handler of ours, called by kopf.
        "invoke_handler (kopf/_core/actions/execution.py:395);pod_event (shoal/handlers/pods.py:33) 2",
        # Importing the handlers' modules at start-up is start-up, not handling.
        "<module> (shoal/__main__.py:1);_find_and_load (<frozen importlib._bootstrap>:1176);"
        "<module> (shoal/handlers/pods.py:1) 1",
        "Condition.notify (threading.py:382) 3",
        "",
    ]
)


def test_samples_are_shared_by_what_the_operator_was_doing() -> None:
    out = summarise(RAW)
    assert out["samples"] == 15
    assert out["share"] == {
        "reconcile threads": 0.4,
        "kopf's machinery": 0.2,
        "other": 0.2,
        "Shoal's event handlers": 0.133,
        "imports (start-up)": 0.067,
    }
    assert out["top"]["reconcile threads"] == {"PoolReconciler.reconcile": 6}
    assert out["top"]["Shoal's event handlers"] == {"pod_event": 2}
    assert out["top"]["kopf's machinery"] == {"stream api.py:278": 3}
