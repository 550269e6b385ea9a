"""shoal-agent: runs the trainer as a child, relays commands to it and reports its progress.

- Commands arrive as annotations of the agent's own pod (shoal.dev/command, shoal.dev/command-id),
  heard through a watch on that pod; a new id becomes a signal to the trainer at once.
- A warm pool pod has no config when it starts: the agent waits for the session's config in the
  pod's shoal.dev/session-config annotation, written when a session claims it, trains, and after the
  trainer exits waits for the release (the annotation removed) before waiting for the next claim.
  With --standby, its trainer waits from the pod's start, its imports paid, and forks one trainer
  per claim (standby.py). Each session checkpoints in its own directory under the pod's; its spec.env
  reaches its trainer only. A checkpoint to resume from that this pod cannot read fails the session (handover.py).
- Progress (the trainer's progress.json, the id of the last acknowledged command, GPU use) is
  patched onto the pod's shoal.dev/progress annotation at once after an acknowledgement, a new
  checkpoint, an error or the exit, and otherwise at most every SHOAL_REPORT_EVERY seconds.
- TensorBoard (6006) and, with videoRecording, the live stream (8000) are served; CPU, RSS and
  NVML GPU figures are exported for Prometheus (9400).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import Counter, Gauge, start_http_server

from shoal.agent import gang
from shoal.agent.handover import Handover, unreachable
from shoal.agent.limits import export_limits
from shoal.agent.podwatch import Annotations, FileWatch, PodWatch
from shoal.agent.proctree import ProcessTree
from shoal.agent.protocol import (
    EXIT_BAD_INPUT,
    checkpoint_dir,
    command_id_file,
    config_file,
    flag,
    load_config,
    progress_file,
    read_json,
    workdir,
    write_json,
)
from shoal.agent.report import FileReporter, GpuSampler, PodReporter, Reporter
from shoal.agent.standby import Standby, Trainer
from shoal.vocab import (
    AGENT_METRICS_PORT,
    ANN_CLAIMED_BY,
    ANN_CLAIMS,
    ANN_COMMAND,
    ANN_COMMAND_ID,
    ANN_SESSION_CONFIG,
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG_FILE,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_RESUME_FROM,
    HANDED_ENV,
)

log = logging.getLogger("shoal.agent")
TICK = 0.2  # seconds between looks at the trainer when no command arrives
# Until the trainer's first progress: a start is timed to it and a look is one stat() of the file.
FIRST_TICK = 0.05
SAMPLE_EVERY = 1.0  # seconds between samples of its CPU, memory and GPUs
URGENT = ("ack", "lastCheckpoint", "error", "exitCode", "done")  # changes reported at once

CPU = Gauge("shoal_agent_cpu_percent", "CPU use of the training process tree")
RSS = Gauge("shoal_agent_rss_bytes", "Resident memory of the training process tree")
TIMESTEPS = Gauge("shoal_agent_timesteps", "Timesteps trained so far")
REPORTS = Counter("shoal_agent_reports_total", "Progress reports sent")
COMMANDS = Counter("shoal_agent_commands_total", "Commands relayed to the trainer", ["verb"])


class Agent:
    def __init__(
        self,
        command: list[str],
        annotations: Annotations,
        reporter: Reporter,
        report_every: float = 5.0,
        bind: str = "0.0.0.0",
        tensorboard_port: int = 6006,
        stream_port: int = 8000,
        standby: bool = False,
    ) -> None:
        self.command = command
        # A warm pod starts its trainer before the claim (its imports paid while idle); only for a
        # trainer that waits for the hand-off (shoal.agent.protocol.standby), not any command.
        self.standby = standby
        self.annotations = annotations
        self.reporter = reporter
        self.report_every = report_every
        self.bind, self.tensorboard_port, self.stream_port = bind, tensorboard_port, stream_port
        self.current: dict[str, str] = {}
        self.handled_id = 0
        self.acked_id = 0
        self.last_report: dict[str, Any] | None = None
        self.last_report_time = 0.0
        self.gpu = GpuSampler()
        self.gpus: list[dict[str, float]] = []
        self.sampled_at = 0.0
        self.stop_requested = False
        self.config_path = config_file()
        self.warm = not self.config_path.exists()
        self.checkpoints = checkpoint_dir()  # the pod's own: a claim's sessions get directories under it
        self.claim_id: tuple[str | None, str | None] = (None, None)
        self.session_env: dict[str, str] = {}  # a claim's spec.env (an own pod's is in the pod spec)
        # When this session's start reached each stage here (wall clock), sent with its reports so the
        # operator can say where a start's time went: config seen (a cold pod: the agent's own start),
        # trainer started (or handed its session), the trainer's first progress file, its first report.
        self.times: dict[str, float] = {} if self.warm else {"configSeen": _process_start()}

    # --- claims (warm pool pods) -------------------------------------------------------------------

    def _await_claim(self) -> bool:
        """Wait for a session's config on this pod and put it where the trainer reads it; False: stopped."""
        log.info("no config at %s: waiting for a session to claim this pod", self.config_path)
        while ANN_SESSION_CONFIG not in self.current and not self.stop_requested:
            self._next_annotations(timeout=1.0)
        if self.stop_requested:
            return False
        self.times = {"configSeen": time.time()}
        session = self.current.get(ANN_CLAIMED_BY) or "session"
        claim = Handover.of(self.current[ANN_SESSION_CONFIG], self.checkpoints, session)
        self.claim_id = self._claim_id()
        path = workdir() / "config.json"
        write_json(path, claim.config)
        # The agent's environment, which the trainer inherits: both read the same config and directories.
        os.environ[ENV_CONFIG_FILE] = str(path)
        os.environ[ENV_CHECKPOINT_DIR] = str(claim.checkpoints)
        if claim.resume_from:
            os.environ[ENV_RESUME_FROM] = claim.resume_from
        else:
            os.environ.pop(ENV_RESUME_FROM, None)
        self.session_env = claim.env  # the trainer's, not the agent's: gone with the session
        self.handled_id = self.acked_id = 0  # a claim starts its command ids afresh
        self.last_report = None
        log.info("claimed by %s", session)
        return True

    def _claim_id(self) -> tuple[str | None, str | None]:
        return self.current.get(ANN_SESSION_CONFIG), self.current.get(ANN_CLAIMS)

    def _await_release(self) -> None:
        """After the trainer: wait until the session lets the pod go (or another claims it), then forget it."""
        while self._claim_id() == self.claim_id and not self.stop_requested:
            self._next_annotations(timeout=1.0)
        for leftover in (progress_file(), command_id_file(), workdir() / "config.json"):
            leftover.unlink(missing_ok=True)
        log.info("released by its session")

    # --- the loop ----------------------------------------------------------------------------------------

    def _next_annotations(self, timeout: float) -> bool:
        try:
            self.current = self.annotations.updates.get(timeout=timeout)
        except queue.Empty:
            return False
        while True:  # only the newest set matters
            try:
                self.current = self.annotations.updates.get_nowait()
            except queue.Empty:
                return True

    def _terminated(self, proc: Trainer) -> None:
        """The pod is being deleted (SIGTERM, as a container runtime sends its first process). A forced
        stop (stopMode Immediate) writes `kill` on the pod before deleting it, and the watch may not
        have delivered that yet: read the annotations afresh, and kill the trainer (no checkpoint) when
        that is the command; otherwise pass SIGTERM on (checkpoint and exit). Either way a warm pod's
        agent then stops: a SIGTERM that comes after the trainer's exit but before its session's
        release (the handler is still this one) would otherwise be lost, and the agent wait on."""
        self.stop_requested = True
        fresh = self.annotations.fresh()
        if fresh is not None:
            self.current = fresh
        if self.current.get(ANN_COMMAND) == "kill":
            self._command(proc)  # nothing more when it was handled already: the trainer is being killed
            return
        handled = self.handled_id
        self._command(proc)  # a pause this deletion carries out (a suspended TrainJob's) is acknowledged
        if self.handled_id == handled or self.current.get(ANN_COMMAND) not in ("pause", "stop"):
            proc.send_signal(signal.SIGTERM)

    def _command(self, proc: Trainer) -> None:
        try:
            cid = int(self.current.get(ANN_COMMAND_ID, "0"))
        except ValueError:
            return
        verb = self.current.get(ANN_COMMAND, "")
        if cid <= self.handled_id or not verb:
            return
        self.handled_id = cid
        command_id_file().parent.mkdir(parents=True, exist_ok=True)
        command_id_file().write_text(str(cid))
        if verb == "checkpoint":
            proc.send_signal(signal.SIGUSR1)
        elif verb in ("pause", "stop"):
            proc.send_signal(signal.SIGTERM)
        elif verb == "kill":  # a forced stop: no checkpoint
            proc.kill()
        else:
            log.warning("command %d: unknown verb %r ignored", cid, verb)
            return
        COMMANDS.labels(verb).inc()
        with open(workdir() / "commands.jsonl", "a") as f:  # when each command reached the trainer
            f.write(json.dumps({"id": cid, "verb": verb, "signalled": time.time()}) + "\n")
        log.info("command %d: %s", cid, verb)

    def _sample(self, tree: ProcessTree) -> list[dict[str, float]]:
        """The trainer's CPU and memory (gauges) and the GPUs (reports), at most once a SAMPLE_EVERY:
        the loop looks at the trainer five times a second for commands, which need no sampling."""
        if time.monotonic() - self.sampled_at >= SAMPLE_EVERY:
            self.sampled_at = time.monotonic()
            cpu, rss = tree.sample()
            CPU.set(cpu)
            RSS.set(rss)
            self.gpus = self.gpu.sample()
        return self.gpus

    def _report(self, gpu: list[dict[str, float]], exit_code: int | None = None) -> None:
        if exit_code is None and not progress_file().exists():
            # Nothing of the trainer's to say yet (the claim cleared the last session's report, and
            # commands wait for its first progress): a report now would be a pod write, a watch event
            # to every watcher and a session reconcile on every start, for nothing.
            return
        progress = read_json(progress_file()) or {}
        last = progress.get("lastCheckpoint") or {}
        if last.get("commandId"):
            self.acked_id = max(self.acked_id, int(last["commandId"]))
        progress["ack"] = self.acked_id
        if gpu:
            progress["gpu"] = gpu
        if exit_code is not None:
            progress["exitCode"] = exit_code
        if "firstProgress" not in self.times and progress_file().exists():
            with contextlib.suppress(OSError):  # the trainer's own write time of its first progress
                self.times["firstProgress"] = progress_file().stat().st_mtime
        TIMESTEPS.set(float(progress.get("timesteps") or 0))
        before = self.last_report or {}
        urgent = any(progress.get(k) != before.get(k) for k in URGENT)
        due = time.monotonic() - self.last_report_time >= self.report_every
        if "firstProgress" in self.times and "reported" not in self.times:
            self.times["reported"] = time.time()  # this report is the first to carry the trainer's progress
            urgent = True
        progress["times"] = dict(self.times)
        if progress != before and (urgent or due):
            REPORTS.inc()
            self.reporter.report(progress)
            if self.times.get("reported") and not before.get("times", {}).get("reported"):
                log.info("first progress reported (%s timesteps)", progress.get("timesteps"))
            self.last_report = progress
            self.last_report_time = time.monotonic()

    def _servers(self) -> tuple[Any, Any]:
        from shoal.agent.servers import StreamServer, start_tensorboard

        ckpt = checkpoint_dir()
        tensorboard = start_tensorboard(ckpt / "tensorboard", self.bind, self.tensorboard_port)
        stream = None
        if flag(load_config(), "videoRecording") and self.stream_port:
            stream = StreamServer(self.bind, self.stream_port, workdir() / "frame.jpg", ckpt / "videos")
            stream.start()
        return tensorboard, stream

    def run(self) -> int:
        """A session pod trains once; a warm pool pod (no config file) trains once per claim until stopped."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        self.annotations.start()
        if not self.warm:
            code = self._train()
            return code if code >= 0 else 128 - code  # killed by signal N: 128+N, as a shell reports it
        waiting: Standby | None = None
        try:
            while True:
                if self.standby and (waiting is None or not waiting.alive()):
                    waiting = Standby(self.command)  # one for the pod's life, unless it dies
                if not self._await_claim():
                    break
                self._train(waiting)
                signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
                self._await_release()
        finally:
            if waiting is not None:
                waiting.close()
        return 0

    def _hand_off(self, waiting: Standby) -> Trainer | None:
        """The claim's trainer from the one in standby (what _await_claim put in the environment)."""
        handed = {key: os.environ.get(key) for key in HANDED_ENV}
        trainer = waiting.hand_off({**handed, "env": self.session_env})
        if trainer is None:
            # It did not wait for its session: started afresh from now on, as any trainer.
            log.warning(
                "the trainer exited (%s) before its claim; not started in standby again", waiting.proc.poll()
            )
            self.standby = False
        return trainer

    def _train(self, waiting: Standby | None = None) -> int:
        volume = self.checkpoints if self.warm else checkpoint_dir()
        lost = unreachable(os.environ.get(ENV_RESUME_FROM), volume, self.warm)
        if lost is not None:  # the trainer in standby stays for the next claim
            log.error("%s: %s", lost.reason, lost.message)
            write_json(progress_file(), {"error": {"reason": lost.reason, "message": lost.message}})
            self._report(self.gpu.sample(), exit_code=EXIT_BAD_INPUT)
            return EXIT_BAD_INPUT
        tensorboard, stream = self._servers()
        proc = self._hand_off(waiting) if waiting is not None else None
        if proc is None:
            proc = subprocess.Popen(self.command, env={**os.environ, **self.session_env})
            if gang.workers() > 1:
                proc = gang.Launcher(proc)
        self.times["trainerStarted"] = time.time()
        tree = ProcessTree(proc.pid)
        signal.signal(signal.SIGTERM, lambda *_: self._terminated(proc))
        try:
            while (code := proc.poll()) is None:
                self._next_annotations(timeout=TICK if "firstProgress" in self.times else FIRST_TICK)
                # Relayed once the trainer has reported: its signal handlers are in place by then (a
                # SIGTERM or SIGUSR1 before that would kill it). A command that came earlier waits.
                if progress_file().exists():
                    self._command(proc)
                self._report(self._sample(tree))
            self._report(self.gpu.sample(), exit_code=code)
            log.info("the trainer exited %d", code)
        finally:
            if tensorboard is not None:  # gone before the next session's starts on the same port
                tensorboard.terminate()
                try:
                    tensorboard.wait(10)
                except subprocess.TimeoutExpired:
                    tensorboard.kill()
                    tensorboard.wait()
            if stream is not None:
                stream.stop()
        return code


def _process_start() -> float:
    """When this agent's process started: a cold pod's config is there from its start."""
    try:
        return float(psutil.Process().create_time())
    except psutil.Error:
        return time.time()


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="shoal-agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--annotations-file",
        default=env("SHOAL_ANNOTATIONS_FILE", ""),
        help="read annotations from this JSON file instead of watching the pod (local runs)",
    )
    parser.add_argument("--report", choices=["pod", "file"], default=env("SHOAL_REPORT", "pod"))
    parser.add_argument("--report-file", default=env("SHOAL_REPORT_FILE", "/shoal/report.json"))
    parser.add_argument("--report-every", type=float, default=float(env("SHOAL_REPORT_EVERY", "5")))
    parser.add_argument("--bind", default=env("SHOAL_BIND", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env("SHOAL_AGENT_PORT", str(AGENT_METRICS_PORT))))
    parser.add_argument("--tensorboard-port", type=int, default=int(env("SHOAL_TENSORBOARD_PORT", "6006")))
    parser.add_argument("--stream-port", type=int, default=int(env("SHOAL_STREAM_PORT", "8000")))
    parser.add_argument(
        "--standby",
        choices=["auto", "on", "off"],
        default=env("SHOAL_TRAINER_STANDBY", "auto"),
        help="warm pods: start the trainer before the claim (auto: only the built-in SB3 trainer, which "
        "supports it; on: the command calls shoal.agent.protocol.standby())",
    )
    parser.add_argument("command", nargs="*", help="training command (default: the SB3 trainer)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.port:
        export_limits()
        start_http_server(args.port, addr=args.bind)
    command = args.command or [sys.executable, "-m", "shoal.agent.sb3"]
    if gang.workers() > 1:
        gang.resume_from_config()
    if gang.follower():
        return gang.follow(command)
    pod = (env(ENV_POD_NAMESPACE, ""), env(ENV_POD_NAME, ""))
    annotations: Annotations = (
        FileWatch(Path(args.annotations_file)) if args.annotations_file else PodWatch(*pod)
    )
    reporter: Reporter = PodReporter(*pod) if args.report == "pod" else FileReporter(Path(args.report_file))
    agent = Agent(
        command,
        annotations,
        reporter,
        report_every=args.report_every,
        bind=args.bind,
        tensorboard_port=args.tensorboard_port,
        stream_port=args.stream_port,
        standby=args.standby == "on" or (args.standby == "auto" and not args.command),
    )
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
