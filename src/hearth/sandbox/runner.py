"""Python code run in a bubblewrap sandbox: what the code interpreter tool executes.

Each run gets a fresh working directory on the host, seen inside the sandbox
as ``/mnt/data`` (where the code interpreter keeps files) and holding the
files given to it. The sandbox (``bwrap``, from Debian's ``bubblewrap``) is
built from nothing: a new mount namespace whose root is an empty tmpfs with
only these mounted in it:

- ``/usr`` (and the ``/bin``, ``/lib`` links), ``/etc/fonts``: read-only;
- the server's own Python installation at ``/opt/python`` and its
  site-packages at ``/opt/site/<n>``: read-only, so numpy, pandas and
  matplotlib import;
- ``/mnt/data``: the run's directory, read-write; ``/tmp``: a small tmpfs;
- a private ``/proc`` and a minimal ``/dev``.

Nothing else of the host exists there: not ``/root``, ``/home``, ``/etc``,
the data directory, the repository or the database. The sandbox also has its
own network namespace (loopback only, so no network at all), and its own
PID, IPC and UTS namespaces; it dies with the server (``--die-with-parent``).

Limits are set by a few lines of Python that run first inside the sandbox
(``_BOOT``), before the user's code: address space (``RLIMIT_AS``), CPU
seconds, the size of any one file written, open files, no core dumps, and the
number of processes (``RLIMIT_NPROC``, so a fork bomb stops at a handful).
When the server runs as root, bwrap runs privileged without a user namespace
and the boot lines drop to an unprivileged uid of their own (one per
concurrent run, from ``uid_base`` on, spread by process id so that server
processes on one machine rarely share one), because the kernel does not count
root's processes against ``RLIMIT_NPROC``; the code then runs with no
capabilities and ``no_new_privs``. Run as another user, bwrap makes a user
namespace instead and the limit counts the processes in it. A wall-clock
limit kills the whole sandbox.

As in a notebook set up for data work, code that uses ``np.``, ``pd.`` or
``plt.`` without importing them finds numpy, pandas and matplotlib's pyplot
under those names (imported only then).

Output is written to files on the host (bounded by the file-size limit) and
read back truncated. Created files are read without following links, so a
symlink the code leaves behind cannot reach the host's files.
"""

from __future__ import annotations

import os
import queue
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

TOOL = "bwrap"
WORKDIR = "/mnt/data"

# Runs inside the sandbox, before the user's code (sys.argv: uid or "-", then the limits).
_BOOT = r"""
import linecache, os, resource, sys
uid, mem, cpu, fsize, nproc = sys.argv[1], *map(int, sys.argv[2:6])
if uid != "-":
    os.setgroups([]); os.setgid(int(uid)); os.setuid(int(uid))
for limit, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0),
                     (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_NPROC, nproc)):
    resource.setrlimit(limit, (value, value))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
import site
for path in sys.argv[6:]:
    site.addsitedir(path)
source = sys.stdin.read()
sys.stdin.close()
sys.stdin = open(os.devnull)
linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
sys.argv = ["<code>"]
namespace = {"__name__": "__main__"}
import re
# As in a notebook set up for data work: the usual short names, imported when the code uses them.
for alias, module in (("np", "numpy"), ("pd", "pandas"), ("plt", "matplotlib.pyplot")):
    if re.search(r"(?<![\w.])" + alias + r"\.", source):
        try:
            namespace[alias] = __import__(module, fromlist=["_"])
        except ImportError:
            pass
try:
    exec(compile(source, "<code>", "exec"), namespace)
except BaseException as error:
    if isinstance(error, SystemExit):
        raise
    import traceback
    # The traceback from the user's code on, without this frame.
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)
    sys.exit(1)
"""


# Whether a sandbox started once in this process (the same bwrap and Python serve every instance).
_probed = False
_probe_lock = threading.Lock()


def ensure_available() -> None:
    """Raise ``SandboxUnavailable`` unless code can run sandboxed here."""
    Sandbox(slots=1).check()


class SandboxUnavailable(Exception):
    """The sandbox cannot run here (bwrap missing, or refused by the kernel); code is never run unsandboxed."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 60.0
    cpu_seconds: int = 30
    memory_bytes: int = 1 << 30
    processes: int = 8
    file_bytes: int = 64 << 20
    tmp_bytes: int = 64 << 20
    output_chars: int = 20_000
    created_files: int = 10
    created_file_bytes: int = 20 << 20


@dataclass(frozen=True)
class CreatedFile:
    name: str  # relative to the working directory
    data: bytes


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False
    created: list[CreatedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def logs(self) -> str:
        """What the code printed and any error, as the code interpreter's ``logs`` output shows it."""
        parts = [self.stdout, self.stderr, *self.notes]
        return "\n".join(part.rstrip("\n") for part in parts if part.strip())


def _python_mounts() -> tuple[str, str, list[str]]:
    """The server's Python installation, its executable inside it, and its site-packages directories."""
    base = os.path.realpath(sys.base_prefix)
    executable = os.path.realpath(sys.executable)
    relative = os.path.relpath(executable, base)
    if relative.startswith(".."):
        relative = f"bin/python{sys.version_info.major}.{sys.version_info.minor}"
    sites = []
    for path in [*site.getsitepackages(), site.getusersitepackages()]:
        real = os.path.realpath(path)
        if os.path.isdir(real) and not real.startswith(base + os.sep) and real not in sites:
            sites.append(real)
    return base, relative, sites


class Sandbox:
    """Runs Python code with limits, no network and nothing of the host; at most ``slots`` at once."""

    def __init__(self, limits: Limits | None = None, *, slots: int = 2, uid_base: int = 60001) -> None:
        self.limits = limits or Limits()
        self.privileged = os.geteuid() == 0
        self._slots: queue.Queue[int | None] = queue.Queue()
        slots = max(1, slots)
        first = uid_base + (os.getpid() % 1024) * slots
        for slot in range(slots):
            self._slots.put(first + slot if self.privileged else None)

    # -- availability ------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``SandboxUnavailable`` unless a sandbox can be started here (probed once per process)."""
        global _probed
        if _probed:
            return
        with _probe_lock:
            if _probed:
                return
            if shutil.which(TOOL) is None:
                raise SandboxUnavailable(
                    "The code interpreter needs bubblewrap ('bwrap', Debian package 'bubblewrap'), which is not "
                    "installed on this server; code is never run outside a sandbox.")
            result = self._run("print(6 * 7)", [], probe=True)
            if result.stdout.strip() != "42":
                raise SandboxUnavailable(
                    "The code interpreter's sandbox (bubblewrap, 'bwrap') cannot start on this server: "
                    f"{(result.stderr or result.stdout).strip()[-500:]}")
            _probed = True

    # -- running -----------------------------------------------------------------------------

    def run(self, code: str, files: Sequence[tuple[str, bytes]] = ()) -> SandboxResult:
        """Run ``code`` in a fresh working directory holding ``files`` (name, bytes); blocks until done."""
        self.check()
        return self._run(code, files)

    def _run(self, code: str, files: Sequence[tuple[str, bytes]], probe: bool = False) -> SandboxResult:
        uid = self._slots.get()
        scratch = Path(tempfile.mkdtemp(prefix="hearth-sandbox-"))
        try:
            workdir = scratch / "data"
            workdir.mkdir()
            given: set[str] = set()
            for name, data in files:
                safe = _safe_name(name, given)
                (workdir / safe).write_bytes(data)
                given.add(safe)
            if uid is not None:
                os.chmod(scratch, 0o711)
                for path in [workdir, *workdir.iterdir()]:
                    os.chown(path, uid, uid)
            stdout_path, stderr_path = scratch / "stdout", scratch / "stderr"
            with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
                if uid is not None:
                    os.fchown(out.fileno(), uid, uid)
                    os.fchown(err.fileno(), uid, uid)
                timed_out, exit_code = self._execute(code, workdir, uid, out, err)
            result = SandboxResult(stdout=_read_text(stdout_path, self.limits.output_chars),
                                   stderr=_read_text(stderr_path, self.limits.output_chars),
                                   exit_code=exit_code, timed_out=timed_out)
            if timed_out:
                result.notes.append(f"Execution stopped: it ran past the time limit of "
                                    f"{self.limits.wall_seconds:g} seconds.")
            elif exit_code is not None and exit_code > 128:
                # bwrap exits 128 + the signal that ended the code.
                result.notes.append(_signal_note(exit_code - 128, self.limits))
            if not probe:
                self._collect(workdir, given, result)
            return result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._slots.put(uid)

    def _command(self, workdir: Path, uid: int | None) -> list[str]:
        base, executable, sites = _python_mounts()
        limits = self.limits
        command = [TOOL, "--die-with-parent", "--new-session",
                   "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if uid is not None:
            command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            command += ["--unshare-user"]
        command += ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                    "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
                    "--perms", "0755", "--dir", "/etc", "--ro-bind-try", "/etc/fonts", "/etc/fonts",
                    "--perms", "0755", "--dir", "/opt", "--ro-bind", base, "/opt/python",
                    "--perms", "0755", "--dir", "/opt/site"]
        inside_sites = []
        for index, path in enumerate(sites):
            command += ["--ro-bind", path, f"/opt/site/{index}"]
            inside_sites.append(f"/opt/site/{index}")
        command += ["--proc", "/proc", "--dev", "/dev",
                    "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
                    "--perms", "0755", "--dir", "/mnt", "--bind", str(workdir), WORKDIR, "--chdir", WORKDIR,
                    "--clearenv"]
        environment = {
            "PATH": "/opt/python/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
            "LD_LIBRARY_PATH": "/opt/python/lib", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        for name, value in environment.items():
            command += ["--setenv", name, value]
        command += [f"/opt/python/{executable}", "-I", "-c", _BOOT, "-" if uid is None else str(uid),
                    str(limits.memory_bytes), str(limits.cpu_seconds), str(limits.file_bytes),
                    str(limits.processes), *inside_sites]
        return command

    def _execute(self, code: str, workdir: Path, uid: int | None, out: BinaryIO, err: BinaryIO
                 ) -> tuple[bool, int | None]:
        process = subprocess.Popen(self._command(workdir, uid), stdin=subprocess.PIPE, stdout=out, stderr=err,
                                   start_new_session=True, close_fds=True)
        try:
            assert process.stdin is not None
            try:
                process.stdin.write(code.encode("utf-8", "replace"))
                process.stdin.close()
            except BrokenPipeError:
                pass
            return False, process.wait(timeout=self.limits.wall_seconds)
        except subprocess.TimeoutExpired:
            process.kill()  # the sandbox's PID namespace dies with it (--die-with-parent)
            process.wait()
            return True, None
        except BaseException:
            process.kill()
            process.wait()
            raise

    def _collect(self, workdir: Path, given: set[str], result: SandboxResult) -> None:
        """Regular files the code created (never following links), up to the limits."""
        limits = self.limits
        for root, dirs, names in os.walk(workdir, followlinks=False):
            dirs.sort()
            for name in sorted(names):
                path = Path(root) / name
                relative = str(path.relative_to(workdir))
                if relative in given:
                    continue
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if len(result.created) >= limits.created_files:
                    result.notes.append(f"Only the first {limits.created_files} created files were kept.")
                    return
                if info.st_size > limits.created_file_bytes:
                    result.notes.append(f"{relative} was not kept: it is larger than "
                                        f"{limits.created_file_bytes >> 20} MiB.")
                    continue
                try:
                    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                with os.fdopen(descriptor, "rb") as handle:
                    data = handle.read(limits.created_file_bytes + 1)
                if len(data) <= limits.created_file_bytes:
                    result.created.append(CreatedFile(relative, data))


def _safe_name(name: str, taken: set[str]) -> str:
    base = os.path.basename(name.replace("\\", "/")).strip() or "file"
    if base in (".", ".."):
        base = "file"
    candidate, counter = base, 1
    while candidate in taken:
        stem, dot, suffix = base.rpartition(".")
        candidate = f"{stem}-{counter}.{suffix}" if dot and stem else f"{base}-{counter}"
        counter += 1
    return candidate


def _read_text(path: Path, limit: int) -> str:
    with open(path, "rb") as handle:
        data = handle.read(limit * 4 + 4)
    text = data.decode("utf-8", "replace")
    if len(text) > limit or path.stat().st_size > len(data):
        return text[:limit] + "\n[output truncated]"
    return text


def _signal_note(signal_number: int, limits: Limits) -> str:
    import signal

    name = signal.Signals(signal_number).name if signal_number in signal.Signals._value2member_map_ else str(
        signal_number)
    if name in ("SIGXCPU", "SIGKILL"):
        return f"Execution stopped by {name}: the CPU time limit is {limits.cpu_seconds} seconds."
    if name == "SIGXFSZ":
        return f"Execution stopped by {name}: a file grew past {limits.file_bytes >> 20} MiB."
    return f"Execution stopped by {name}."
