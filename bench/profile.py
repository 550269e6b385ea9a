"""Where the operator's CPU goes during a benchmark: `python -m bench.profile --only B1 --quick` runs the
benchmark as `python -m bench` would and samples the first operator process it starts (B1: the raised
setting's) with py-spy (only threads holding
the GIL, so a thread waiting on a socket or a lock is not counted), then sorts every sample by what it
was doing: kopf's own machinery (its watch streams, per-object workers, causes and handler calls), Shoal's
event handlers that kopf calls, the reconcile threads (by reconciler line), the operator's start-up
imports, and the rest. Written to bench/results/profile-<benchmarks>.json with the date and commit,
beside the raw stacks (.raw.gz).

py-spy is a sampling profiler in another process (https://github.com/benfred/py-spy): it reads the
operator's stacks without changing its code, at some cost in CPU that the benchmark's own figures then
carry, so a profiled run's timings are not the benchmark's results (this writes none of them)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import provenance

RESULTS = Path(__file__).resolve().parent / "results"
PY_SPY = Path(sys.executable).parent / "py-spy"


def category(frames: list[str]) -> tuple[str, str]:
    """One sample's (category, detail) from its stack, outermost frame first."""
    stack = ";".join(frames)
    if "_reconcile (shoal/runtime/operator.py" in stack:  # a worker thread's reconcile
        inner = next((f for f in frames if "shoal/reconcile/" in f), "")
        return "reconcile threads", inner.split(" (")[0] or "other"
    if "importlib" in stack:
        return "imports (start-up)", ""
    if "shoal/handlers/" in stack:
        inner = next((f for f in reversed(frames) if "shoal/" in f), "")
        return "Shoal's event handlers", inner.split(" (")[0]
    if "kopf/" in stack:
        inner = next((f for f in reversed(frames) if "kopf/" in f), "")
        return "kopf's machinery", inner.split(" (")[0] + " " + inner.rsplit("/", 1)[-1].rstrip(")")
    return "other", frames[-1].split(" (")[0] if frames else ""


def summarise(text: str) -> dict[str, Any]:
    """Shares of py-spy's raw (collapsed) stacks, `text`, by category, and each one's top frames."""
    by: collections.Counter[str] = collections.Counter()
    detail: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        kind, what = category(stack.split(";"))
        by[kind] += int(count)
        detail[kind][what] += int(count)
    total = sum(by.values())
    return {
        "samples": total,
        "share": {k: round(n / total, 3) for k, n in by.most_common()} if total else {},
        "top": {k: dict(detail[k].most_common(8)) for k in by},
    }


def operator_pid(parent: int, timeout: float = 120.0) -> int | None:
    """The first `python -m shoal` among `parent`'s descendants (the benchmark's operator)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(parent).children(recursive=True)
        except psutil.Error:
            return None  # the benchmark itself ended
        for proc in children:
            with contextlib.suppress(psutil.Error):  # a short-lived child already gone
                if proc.cmdline()[-2:] == ["-m", "shoal"]:
                    return proc.pid
        time.sleep(0.2)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", required=True, help="benchmarks to run, as python -m bench --only")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int, default=200, help="samples a second")
    args = parser.parse_args()
    if not PY_SPY.exists():  # checked first: a benchmark started for nothing would be left to clean up
        print(f"{PY_SPY} is missing: pip install py-spy (in the dev extra)", file=sys.stderr)
        return 1
    head = provenance()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "operator.raw"
        # --no-save: a profiled run's timings carry py-spy's cost, so they are not figures.
        bench_cmd = [sys.executable, "-m", "bench", "--only", args.only, "--no-save"]
        bench_cmd += ["--quick"] if args.quick else []
        # A session of its own: if this script fails or is interrupted, the benchmark and the operator
        # it started go with it (a stray operator would reconcile whatever runs on the test bed next).
        bench = subprocess.Popen(bench_cmd, start_new_session=True)
        try:
            pid = operator_pid(bench.pid)
            if pid is None:
                bench.wait()
                print("no operator process found under the benchmark", file=sys.stderr)
                return 1
            spy_cmd = [str(PY_SPY), "record", "--pid", str(pid), "--gil", "--nonblocking"]
            spy_cmd += ["--rate", str(args.rate), "--format", "raw", "--output", str(raw)]
            spy = subprocess.Popen(spy_cmd)
            code = bench.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(bench.pid, signal.SIGKILL)
            raise
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
        spy.wait(60)
        out = {**head, "benchmarks": args.only, "quick": args.quick, "operator_pid": pid, "rate": args.rate}
        text = raw.read_text()
        out |= summarise(text)
    name = RESULTS / f"profile-{args.only.replace(',', '-').lower()}"
    name.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    # The stacks themselves, to sort another way later (or draw: flamegraph.pl reads this format).
    name.with_suffix(".raw.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    print(json.dumps({k: out[k] for k in ("samples", "share")}, indent=1))
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
