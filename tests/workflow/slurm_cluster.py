"""A real single-node Slurm cluster for tests: Debian's ``slurm-wlm`` and ``munge``, run as root
in a temporary directory, loopback only, stopped afterwards.

Facts this depends on (measured on these machines): munged needs its socket in a directory of
its own with mode 755 (``AuthInfo=socket=...`` tells Slurm where); the Snakemake Slurm
plugin's job step drops every ``SLURM_*`` variable, ``SLURM_CONF`` included, so the config must
also be at the default ``/etc/slurm/slurm.conf`` (a symlink, removed afterwards, refused if a
real file is there); without accounting ``sacct`` fails, so Snakemake is told to poll
``squeue`` and ``MinJobAge=600`` keeps finished jobs visible to it; memory limits are not
enforced without cgroups. Daemons are stopped by PID, SIGKILL after 10 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["SlurmUnavailable", "SlurmCluster"]

DAEMONS = ("munged", "slurmctld", "slurmd")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the cluster (not root, or the packages are missing)."""


def _which(name: str) -> str:
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if (Path(d) / name).exists():
            return str(Path(d) / name)
    path = shutil.which(name)
    if path is None:
        raise SlurmUnavailable(f"{name} not found (apt-get install slurm-wlm munge)")
    return path


def _memory_mb() -> int:
    """90 % of this machine's memory in MB: what the node offers to jobs' --mem requests."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 4000


class SlurmCluster:
    """``with SlurmCluster(tmp) as cluster: ...`` starts munged, slurmctld and slurmd with
    partition ``main`` (``cpus`` CPUs on this host) and stops them on exit."""

    def __init__(self, root: Path, cpus: int = 2):
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster runs its daemons as root")
        self.bins = {name: _which(name) for name in (*DAEMONS, "sinfo", "squeue")}
        self.root, self.cpus = Path(root), cpus
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self.conf = self.root / "slurm.conf"
        self.linked = False

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write(self) -> None:
        r = self.root
        for d in ("munge_socket", "state", "spool", "log", "run"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge_socket").chmod(0o755)
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.socket = r / "munge_socket" / "munge.socket"
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=amtest",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.socket}",
                    f"StateSaveLocation={r / 'state'}",
                    f"SlurmdSpoolDir={r / 'spool'}",
                    f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
                    f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
                    f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
                    "SlurmctldPort=6817",
                    "SlurmdPort=6818",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MinJobAge=600",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "SchedulerType=sched/backfill",
                    f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={_memory_mb()} State=UNKNOWN",
                    "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _start(self, name: str, args: list[str], pidfile: Path) -> None:
        subprocess.run([self.bins[name], *args], env=self.env, check=True, capture_output=True)
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids[name] = int(pidfile.read_text().strip())
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start; see {self.root / 'log'}")

    def __enter__(self) -> SlurmCluster:
        if DEFAULT_CONF.exists() and not DEFAULT_CONF.is_symlink():
            raise SlurmUnavailable(f"{DEFAULT_CONF} exists (a real Slurm here): not touching it")
        self._write()
        try:
            r = self.root
            self._start("munged", ["--force", f"--key-file={r / 'munge.key'}",
                                   f"--socket={self.socket}", f"--pid-file={r / 'run' / 'munged.pid'}",
                                   f"--log-file={r / 'log' / 'munged.log'}",
                                   f"--seed-file={r / 'run' / 'munged.seed'}"],  # fmt: skip
                        r / "run" / "munged.pid")  # fmt: skip
            DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
            if DEFAULT_CONF.is_symlink():
                DEFAULT_CONF.unlink()
            DEFAULT_CONF.symlink_to(self.conf)
            self.linked = True
            self._start("slurmctld", ["-f", str(self.conf)], r / "run" / "slurmctld.pid")
            self._start("slurmd", ["-f", str(self.conf)], r / "run" / "slurmd.pid")
            self.wait_idle()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            out = subprocess.run([self.bins["sinfo"], "-h", "-o", "%T"], env=self.env,
                                 capture_output=True, text=True)  # fmt: skip
            state = out.stdout.strip()
            if state.startswith("idle"):
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the node did not become idle (sinfo: {state!r}); see {self.root / 'log'}"
        )

    def __exit__(self, *exc) -> None:
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.linked and DEFAULT_CONF.is_symlink():
            DEFAULT_CONF.unlink()
            self.linked = False
