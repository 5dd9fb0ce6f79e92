"""Run a grading kernel where the student's code cannot reach the grader.

The kernel starts under bubblewrap (Debian package ``bubblewrap``) and ``prlimit``:
no network, its own process namespace (every process it spawns dies with it), the
course folder and the instructor's home hidden (so ``solutions/``, the gradebook, the
secret seed and other students' work are out of sight), only its own submission folder
and the exchange folder writable, and limits on memory, processes, open files and file
size. It talks to the grader over Unix sockets in the exchange folder.

``AUTOGRADER_SANDBOX=off`` runs the kernel without it, for machines where bubblewrap
cannot run; the verdict is still reached outside the kernel, but nothing then stops the
student's code from reading or writing the instructor's files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode

from .config import course_root

LIMITS = {  # prlimit options: address space, processes, open files, largest file written, CPU seconds
    "--as": os.environ.get("AUTOGRADER_MEMORY_LIMIT", str(8 * 2**30)),
    "--nproc": "512",
    "--nofile": "1024",
    "--fsize": str(256 * 2**20),
    "--cpu": "3600",
}
# Not passed into the sandbox: the secret seed, and the parent's pid (invisible in the kernel's own
# process namespace, where ipykernel would take it for a dead parent; --die-with-parent does that job).
WITHHELD = ("AUTOGRADER_SEED", "JPY_PARENT_PID")


def enabled() -> bool:
    return os.environ.get("AUTOGRADER_SANDBOX", "on").strip().lower() not in ("off", "0", "no")


def check_available() -> None:
    if enabled() and shutil.which("bwrap") is None:
        raise RuntimeError("Grading runs student code under bubblewrap, which is not installed: "
                           "apt-get install bubblewrap (or set AUTOGRADER_SANDBOX=off to grade without a sandbox).")


def command(kernel_cmd: list[str], submission: Path, exchange: Path) -> list[str]:
    """``kernel_cmd`` wrapped in bubblewrap and prlimit."""
    package = Path(__file__).resolve().parent
    hidden = [course_root(), Path.home()]
    visible_again = [Path(sys.prefix), Path(sys.base_prefix), package]
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    for folder in visible_again:
        args += ["--ro-bind", str(folder), str(folder)]
    args += ["--bind", str(submission), str(submission), "--bind", str(exchange), str(exchange),
             "--ro-bind", str(exchange / "cases"), str(exchange / "cases"), "--chdir", str(submission)]
    limits = [f"{option}={value}" for option, value in LIMITS.items()]
    return args + ["--", "prlimit", *limits, "--", *kernel_cmd]


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox and reaches the grader only through ``exchange``."""

    submission = Unicode()
    exchange = Unicode()

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        env = {key: value for key, value in (kw.get("env") or os.environ).items() if key not in WITHHELD}
        env["AUTOGRADER_EXCHANGE"] = self.exchange
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")  # graders run one kernel per core: more threads only contend
        kw["env"] = env
        kw["independent"] = True  # else jupyter_client sets JPY_PARENT_PID again
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel's banner; cell output travels by the sockets
        if enabled():
            kernel_cmd = command(kernel_cmd, Path(self.submission), Path(self.exchange))
        await super()._async_launch_kernel(kernel_cmd, **kw)
