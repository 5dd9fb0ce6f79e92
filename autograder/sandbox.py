"""Run a grading kernel where the student's code cannot reach the grader.

The kernel starts under bubblewrap (Debian package ``bubblewrap``) and ``prlimit``:
no network, its own process namespace (every process it spawns dies with it), ``/tmp``,
the course folder and the instructor's home hidden (so ``solutions/``, the gradebook, the
secret seed and other students' work are out of sight), only its own submission folder
and the exchange folder writable, and limits on processes, open files and file size. It
talks to the grader over Unix sockets in the exchange folder.

What the kernel must import is shown again, read-only, wherever it is installed: the
autograder package's real folder (an editable checkout's source or a wheel's copy), the
interpreter's prefixes and its site-packages folders. Nothing else of a hidden folder is.

Memory is limited on what the kernel really uses, not on its address space: CUDA reserves
far more virtual memory than it touches, so an address-space limit would stop it from
starting. A watchdog thread in the grader adds up the resident memory of the kernel's
process tree and stops the kernel past ``AUTOGRADER_MEMORY_LIMIT`` bytes (default 8 GiB).

``AUTOGRADER_SANDBOX=off`` runs the kernel without bubblewrap, for machines where it
cannot run; the verdict is still reached outside the kernel and the memory watchdog still
runs, but nothing then stops the student's code from reading or writing the instructor's
files, or reaching the network.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode

from . import protocol
from .config import course_root

LIMITS = {  # prlimit options: processes, open files, largest file written, CPU seconds
    "--nproc": "512",
    "--nofile": "1024",
    "--fsize": str(256 * 2**20),
    "--cpu": "3600",
}
DEFAULT_MEMORY_LIMIT = 8 * 2**30
WATCH_INTERVAL = 0.05  # seconds between two looks at the kernel's memory
# Not passed into the sandbox: the secret seed, and the parent's pid (invisible in the kernel's own
# process namespace, where ipykernel would take it for a dead parent; --die-with-parent does that job).
WITHHELD = ("AUTOGRADER_SEED", "JPY_PARENT_PID")


def enabled() -> bool:
    return os.environ.get("AUTOGRADER_SANDBOX", "on").strip().lower() not in ("off", "0", "no")


def memory_limit() -> int:
    """Bytes of resident memory a grading kernel may use (``AUTOGRADER_MEMORY_LIMIT``)."""
    text = os.environ.get("AUTOGRADER_MEMORY_LIMIT", "").strip()
    if not text:
        return DEFAULT_MEMORY_LIMIT
    if not text.isdigit() or int(text) < 2**28:
        raise ValueError(
            f"AUTOGRADER_MEMORY_LIMIT must be a number of bytes of at least {2**28} (256 MiB), got {text!r}."
        )
    return int(text)


def gib(size: int) -> str:
    return f"{size / 2**30:g} GiB"


def check_available() -> None:
    if enabled() and shutil.which("bwrap") is None:
        raise RuntimeError(
            "Grading runs student code under bubblewrap, which is not installed: "
            "apt-get install bubblewrap (or set AUTOGRADER_SANDBOX=off to grade without a sandbox)."
        )


def _contains(folder: Path, other: Path) -> bool:
    return folder == other or folder in other.parents


def _site_folders() -> set[Path]:
    """The site-packages folders of this Python (the user's one too, when it is on sys.path), and every
    folder on sys.path that packages were installed into (it holds ``*.dist-info``; a checkout does not)."""
    folders = set(site.getsitepackages())
    user = site.getusersitepackages()
    if site.ENABLE_USER_SITE and user in sys.path:
        folders.add(user)
    folders |= {
        entry for entry in sys.path if entry and os.path.isdir(entry) and next(Path(entry).glob("*.dist-info"), None)
    }
    return {Path(f) for f in folders}


def _wanted() -> set[Path]:
    package = Path(__file__).resolve().parent
    return {
        package,
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.exec_prefix),
        Path(sys.base_exec_prefix),
        Path(os.path.realpath(sys.executable)).parent.parent,
        *_site_folders(),
    }


def visible_again(hidden: list[Path]) -> list[Path]:
    """The real folders of what the kernel must import, inside the hidden folders or not, without a hidden one.

    A folder that holds a hidden one (the prefix of a virtualenv that holds the course, say) is
    left out: showing it would show the course again. The package's own folder is enough then.
    """
    shown = {folder.resolve() for folder in _wanted() if folder.is_dir()}
    shown = {folder for folder in shown if not any(_contains(folder, h) for h in hidden)}
    return sorted(shown, key=lambda p: (len(p.parts), str(p)))  # parents before what they hold


def links_again(hidden: list[Path], shown: list[Path]) -> list[tuple[Path, Path]]:
    """(real folder, path) for each path of what the kernel imports that goes through a symbolic link inside a
    hidden folder, where the sandbox would otherwise lose the link (a shown folder above it keeps its own)."""
    links = []
    for folder in _wanted():
        real = folder.resolve()
        if (
            folder != real
            and real in shown
            and any(_contains(h, folder) for h in hidden)
            and not any(s in folder.parents for s in shown)
        ):
            links.append((real, folder))
    return sorted(links)


def hidden_folders() -> list[Path]:
    return [Path("/tmp"), course_root().resolve(), Path.home().resolve()]


def hides(path: Path) -> bool:
    """Whether the sandboxed kernel cannot see ``path``."""
    path = path.resolve()
    hidden = hidden_folders()
    return any(_contains(h, path) for h in hidden) and not any(_contains(v, path) for v in visible_again(hidden))


def command(kernel_cmd: list[str], submission: Path, exchange: Path) -> list[str]:
    """``kernel_cmd`` wrapped in bubblewrap and prlimit."""
    hidden = hidden_folders()
    args = [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for device in sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri")):  # a GPU, where there is one
        args += ["--dev-bind", device, device]
    for folder in hidden:
        args += ["--tmpfs", str(folder)]
    shown = visible_again(hidden)
    for folder in shown:
        args += ["--ro-bind", str(folder), str(folder)]
    for real, link in links_again(hidden, shown):
        args += ["--symlink", str(real), str(link)]
    args += [
        "--bind",
        str(submission),
        str(submission),
        "--bind",
        str(exchange),
        str(exchange),
        "--ro-bind",
        str(exchange / protocol.CASES),
        str(exchange / protocol.CASES),
        "--chdir",
        str(submission),
    ]
    limits = [f"{option}={value}" for option, value in LIMITS.items()]
    return args + ["--", "prlimit", *limits, "--", *kernel_cmd]


def why_it_cannot_start(submission: Path, exchange: Path) -> str | None:
    """What bubblewrap says when it cannot start a process here (None when it can)."""
    if not enabled():
        return None
    try:
        run = subprocess.run(
            command([sys.executable, "-c", "pass"], submission, exchange), capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    said = [line.strip() for line in run.stderr.splitlines() if line.strip()]
    return None if run.returncode == 0 else (said[-1] if said else f"bwrap exited with status {run.returncode}")


def _listed_children() -> bool:
    """Whether this system lists each thread's children in ``/proc/PID/task/TID/children`` (Linux does)."""
    return os.path.isfile(f"/proc/self/task/{threading.get_native_id()}/children")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first.

    Read from ``/proc/PID/task/TID/children``: a look costs what the tree holds. (psutil's
    ``children()`` reads every process of the machine, and the memory watch looks twenty times a second.)
    """
    if not _listed_children():
        import psutil

        try:
            return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        except psutil.Error:
            return [pid]
    tree = [pid]
    for parent in tree:  # grows as it goes
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as listed:
                    tree += [int(child) for child in listed.read().split()]
        except OSError:  # it ended while we looked: it has no children any more
            continue
    return tree


def resident_memory(pid: int) -> int:
    """Bytes of memory ``pid`` really uses (its resident set); 0 once it has ended."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return 0


class MemoryWatch(threading.Thread):
    """Stops a process tree whose resident memory grows past ``limit`` bytes; ``exceeded`` says it did.

    It ends with the process it watches.

    It also marks the tree as the first the system should stop when memory runs out, so that a
    spike between two looks costs the kernel, never the grader.
    """

    def __init__(self, process: subprocess.Popen, limit: int):
        super().__init__(daemon=True)
        self.process, self.limit = process, limit
        self.exceeded = False

    def run(self) -> None:
        marked = set()
        while self.process.poll() is None:
            time.sleep(WATCH_INTERVAL)
            tree = process_tree(self.process.pid)
            for pid in set(tree) - marked:
                marked.add(pid)
                _least_wanted(pid)
            if sum(resident_memory(pid) for pid in tree) > self.limit:
                self.exceeded = True
                for pid in reversed(tree):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return


def _least_wanted(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
    except OSError:  # not Linux, or not ours to mark: the watchdog still holds the limit
        pass


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox and reaches the grader only through ``exchange``."""

    submission = Unicode()
    exchange = Unicode()
    watch: MemoryWatch | None = None

    @property
    def memory_exceeded(self) -> bool:
        """Whether the memory watchdog stopped the kernel."""
        return bool(self.watch and self.watch.exceeded)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        env = {key: value for key, value in (kw.get("env") or os.environ).items() if key not in WITHHELD}
        env[protocol.ENV] = self.exchange
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")  # graders run one kernel per core: more threads only contend
        kw["env"] = env
        kw["independent"] = True  # else jupyter_client sets JPY_PARENT_PID again
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel's banner; cell output travels by the sockets
        if enabled():
            kernel_cmd = command(kernel_cmd, Path(self.submission), Path(self.exchange))
        await super()._async_launch_kernel(kernel_cmd, **kw)
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            self.watch = MemoryWatch(process, memory_limit())
            self.watch.start()
