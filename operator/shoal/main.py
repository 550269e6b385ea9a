"""Entry point: `python -m shoal` or the `shoal` console script runs the operator with kopf."""

from __future__ import annotations

import logging
import sys

import kopf

from shoal.config import Settings, SettingsError


def main() -> None:
    try:
        cfg = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"shoal: {exc}")  # a clear line and exit 1, not a traceback in CrashLoopBackOff
    kopf.configure(
        verbose=cfg.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(cfg.log_level)
    if cfg.log_level != "DEBUG":
        # kopf logs "Handler 'pod_event' succeeded." at INFO for every watch event: thousands of lines
        # a minute under load (B4's log: 9 in 10 lines were these), each formatted and written on the
        # operator's one core. Its warnings and errors (a handler that raised) still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import shoal.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,  # one active replica comes from the Lease (shoal.runtime.leader)
        clusterwide=not cfg.namespaces,
        namespaces=list(cfg.namespaces),
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None,
    )


if __name__ == "__main__":
    main()
