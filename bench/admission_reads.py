"""What 200 pending TrainingSessions cost the API server: requests per second by kind, counted by a proxy
in front of it (testbed/faultproxy.py, with no faults), for operator source trees given side by side.

Each session asks for more CPU than any node has, so all 200 stay Pending (queued) and are re-judged
on every requeue; nothing else runs. Repetitions alternate the trees. Usage (on the test bed):

    python -m bench.admission_reads --tree before=/tmp/before --tree after=. --reps 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from testbed.faultproxy import FaultProxy
from testbed.operator_process import OperatorProcess
from testbed.seed import kubectl

RESULTS = Path(__file__).resolve().parent / "results" / "admission-reads.json"
SESSIONS = 200
WINDOW = 30.0


def kind(method: str, path: str) -> str:
    """`LIST pods`, `PATCH trainingsessions/status`...: the verb and resource of a request path."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        rest = parts[parts.index("namespaces") + 2 :]
    else:
        rest = parts[2:] if parts[0] == "api" else parts[3:]
    verb = {"GET": "LIST" if len(rest) == 1 else "GET"}.get(method, method)
    return f"{verb} {'/'.join(r for i, r in enumerate(rest) if i != 1) or path}"


def manifests(ns: str) -> str:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for i in range(SESSIONS):
        docs.append(
            {
                "apiVersion": "shoal.dev/v1alpha1",
                "kind": "TrainingSession",
                "metadata": {"name": f"s-{i:03d}", "namespace": ns},
                "spec": {
                    "game": "CartPole-v1",
                    "algorithm": "PPO",
                    "image": "registry.example/trainer:1",
                    "totalTimesteps": 1000,
                    "resources": {"cpu": "400", "memory": "1Gi"},
                },
            }
        )
    return yaml.safe_dump_all(docs)


def pending(ns: str) -> int:
    out = json.loads(kubectl("get", "trainingsessions", "-n", ns, "-o", "json"))
    return sum(
        1
        for o in out["items"]
        if (o.get("status") or {}).get("reason") in ("InsufficientCapacity", "NoNodeFits")
    )


def commit_of(tree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def one_run(label: str, tree: Path, workdir: Path) -> dict[str, Any]:
    proxy = FaultProxy()
    proxy.start()
    # The shared launcher, at the chart's log level, running the given tree's operator code.
    op = OperatorProcess(
        proxy.kubeconfig(workdir / f"{label}.kubeconfig"),
        log_file=workdir / f"{label}.log",
        tree=tree,
        env={"SHOAL_LEASE_NAME": f"bench-{uuid.uuid4().hex[:6]}", "PATH": "/usr/bin:/bin"},
    )
    op.start(ready=False)
    ns = f"bench-reads-{uuid.uuid4().hex[:6]}"
    try:
        kubectl("apply", "-f", "-", stdin=manifests(ns))
        deadline = time.monotonic() + 180
        while pending(ns) < SESSIONS:
            if time.monotonic() > deadline or not op.running():
                raise RuntimeError(f"{label}: sessions never all pending; see {workdir}/{label}.log")
            time.sleep(1)
        before = Counter(proxy.requests)
        start = time.monotonic()
        time.sleep(WINDOW)  # the measurement window itself: requests counted over a fixed time
        elapsed = time.monotonic() - start
        counted = Counter(proxy.requests)
        counted.subtract(before)
        by_kind: Counter[str] = Counter()
        for (method, path), n in counted.items():
            if n > 0 and "/watch" not in path and "watch=" not in path:
                by_kind[kind(method, path)] += n
        kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s")
    finally:
        op.stop()
        proxy.stop()
    return {
        "tree": label,
        "commit": commit_of(tree),
        "window_s": round(elapsed, 1),
        "requests_per_s": round(sum(by_kind.values()) / elapsed, 2),
        "by_kind_per_s": {k: round(v / elapsed, 2) for k, v in by_kind.most_common()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, help="label=path of an operator source tree")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = trees if rep % 2 == 0 else trees[::-1]
            for label, tree in order:
                run = one_run(label, tree, Path(tmp))
                print(json.dumps(run), flush=True)
                runs.append(run)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"date": datetime.now(UTC).isoformat(timespec="seconds"), "sessions": SESSIONS, "runs": runs},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
