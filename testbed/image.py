"""An image built by `make image`, run here the way a container runtime would, without one: the OCI
archive unpacked by umoci into a runtime bundle (a root filesystem and the image's process: entrypoint,
user, environment), its entrypoint started under `unshare` (its own mount and PID namespaces, its own
/proc) and `chroot`, as the image's user. It is stopped through its process group: unshare passes no
signal on, and the entrypoint, PID 1 of its namespace, takes the namespace down when it ends. The
network stays this machine's, so the process reaches the test bed's API server as a pod reaches its
cluster's, through KUBERNETES_SERVICE_HOST and the service account files at TOKEN_MOUNT. (crun and
runc refuse this machine's cgroups; unshare + chroot do not need them.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from testbed.cluster import HOST, PKI, PORTS
from testbed.localpod import TOKEN_MOUNT

ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def build(kind: str = "operator", timeout: float = 1200) -> Path:
    """`make image` (or `make image-trainer`): the archive it wrote."""
    target = "image" if kind == "operator" else f"image-{kind}"
    subprocess.run(["make", "-s", target], cwd=ROOT, check=True, timeout=timeout)
    name = "shoal" if kind == "operator" else kind
    return ROOT / "dist" / f"{name}-{version()}.oci.tar"


@dataclass(frozen=True)
class Bundle:
    rootfs: Path
    args: list[str]
    env: list[str]
    uid: int
    gid: int
    cwd: str

    def command(self) -> list[str]:
        """The image's process: the image's environment over the caller's (less what names this
        machine's Python), as the image's user, in its root filesystem."""
        return [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            f"--mount-proc={self.rootfs / 'proc'}",
            "chroot",
            f"--userspec={self.uid}:{self.gid}",
            str(self.rootfs),
            "/usr/bin/env",
            "-u",
            "PYTHONPATH",
            "-u",
            "VIRTUAL_ENV",
            f"--chdir={self.cwd}",
            *self.env,
            *self.args,
        ]

    def processes(self) -> list[int]:
        """The processes running in this root filesystem (the image's, still alive)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "root") == str(self.rootfs):
                        found.append(int(entry.name))
        return found

    def inside(self, path: str) -> Path:
        """`path` as the image's processes see it, on this machine: symbolic links resolve within the
        root filesystem (Debian's /var/run is a link to /run, which outside the image is this
        machine's own /run)."""
        here = self.rootfs
        for part in Path(path).relative_to("/").parts:
            here = here / part
            for _ in range(40):
                if not here.is_symlink():
                    break
                target = Path(os.readlink(here))
                here = self.rootfs / target.relative_to("/") if target.is_absolute() else here.parent / target
        if not here.resolve().is_relative_to(self.rootfs.resolve()):
            raise ValueError(f"{path} leaves the image's root filesystem")
        return here

    def service_account(self, token: str, namespace: str) -> dict[str, str]:
        """The files the kubelet mounts for a pod's service account, and the environment that points
        the in-cluster configuration at the test bed's API server."""
        mount = self.inside(TOKEN_MOUNT)
        mount.mkdir(parents=True, exist_ok=True)
        (mount / "token").write_text(token)
        (mount / "namespace").write_text(namespace)
        shutil.copyfile(PKI / "ca.crt", mount / "ca.crt")
        for path in (mount, *mount.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return {"KUBERNETES_SERVICE_HOST": HOST, "KUBERNETES_SERVICE_PORT": str(PORTS["kube-apiserver"])}


def unpack(archive: Path, dest: Path) -> Bundle:
    """The archive's image as a runtime bundle under `dest` (umoci unpack, as root: the files keep the
    image's owners)."""
    layout = dest / "layout"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci-archive:{archive}", f"oci:{layout}:image"], check=True)
    bundle = dest / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:image", str(bundle)], check=True)
    process = json.loads((bundle / "config.json").read_text())["process"]
    return Bundle(
        rootfs=bundle / "rootfs",
        args=list(process["args"]),
        env=list(process.get("env", [])),
        uid=int(process["user"]["uid"]),
        gid=int(process["user"]["gid"]),
        cwd=str(process.get("cwd") or "/"),
    )
