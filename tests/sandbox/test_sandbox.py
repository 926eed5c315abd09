"""The code interpreter's sandbox on its own: what code may do in it, and what it may not.

Each test runs real code under bubblewrap with small limits, so the refusals
(network, the host's files, fork bombs, memory, CPU, time) are the kernel's.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.assistants import code_interpreter
from hearth.errors import InvalidRequest
from hearth.sandbox import Limits, Sandbox, SandboxUnavailable, runner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(Limits(wall_seconds=60, cpu_seconds=5, memory_bytes=1 << 30, processes=8))


def test_code_computes_reads_its_files_and_creates_new_ones(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "import hashlib, pandas as pd, matplotlib.pyplot as plt\n"
        "frame = pd.read_csv('values.csv')\n"
        "print(hashlib.sha256(b'hearth').hexdigest(), round(frame['value'].mean(), 2))\n"
        "frame.plot.bar(x='city', y='value').figure.savefig('chart.png')\n"
        "open('out/notes.txt', 'w').write('done') if __import__('os').makedirs('out') is None else None\n",
        [("values.csv", b"city,value\nOslo,12.5\nLima,20.25\nPune,19.3\n")])
    assert result.exit_code == 0, result.logs
    assert result.stdout.split() == [hashlib.sha256(b"hearth").hexdigest(), "17.35"]
    created = {item.name: item.data for item in result.created}
    assert set(created) == {"chart.png", "out/notes.txt"}
    assert created["chart.png"].startswith(b"\x89PNG") and created["out/notes.txt"] == b"done"


def test_errors_come_back_as_a_traceback_of_the_code(sandbox: Sandbox) -> None:
    result = sandbox.run("x = 1\n1 / 0\n")
    assert result.exit_code == 1
    assert 'File "<code>", line 2' in result.logs and "ZeroDivisionError" in result.logs
    assert "<string>" not in result.logs  # the sandbox's own start-up lines are not shown


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        yield server


def test_there_is_no_network(sandbox: Sandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = sandbox.run(
        "import socket\n"
        f"for host, port in (('127.0.0.1', {port}), ('1.1.1.1', 80)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3); print('connected', host)\n"
        "    except OSError as error: print('refused', host, error.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443); print('resolved')\n"
        "except OSError: print('no dns')\n")
    assert "connected" not in result.stdout and "resolved" not in result.stdout, result.logs
    assert result.stdout.count("refused") == 2 and "no dns" in result.stdout
    with pytest.raises(TimeoutError):
        listener.accept()  # the host's loopback is not the sandbox's


def test_nothing_of_the_host_is_visible(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    paths = ["/root", "/home", "/etc/passwd", "/etc/shadow", str(secret), str(REPO), str(REPO / "pyproject.toml"),
             os.path.expanduser("~/.local/share/hearth")]
    result = sandbox.run(
        "import os, json\n"
        f"paths = {paths!r}\n"
        "print(json.dumps({path: os.path.exists(path) for path in paths}))\n"
        "print(sorted(os.listdir('/')))\n"
        "print(os.getuid() != 0, open('/proc/self/status').read().count('CapEff:\\t0000000000000000'))\n")
    lines = result.stdout.splitlines()
    assert lines[0].count("true") == 0, lines[0]
    assert eval(lines[1]) == sorted(["bin", "dev", "etc", "lib", "lib64", "mnt", "opt", "proc", "sbin", "tmp", "usr"])
    assert lines[2] == "True 1"  # not root, and no capabilities
    write = sandbox.run("open('/usr/evil', 'w')")
    assert "Read-only file system" in write.logs or "Permission denied" in write.logs


def test_links_it_leaves_are_not_followed(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    result = sandbox.run(f"import os\nos.symlink({str(secret)!r}, 'leak.txt')\nos.symlink('/etc', 'etc')\n")
    assert result.exit_code == 0 and result.created == []


def test_a_fork_bomb_stops_at_the_process_limit(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "import os, sys\n"
        "children = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as error:\n"
        "        print('stopped after', children, error.strerror); sys.stdout.flush(); os._exit(0)\n"
        "    if pid == 0:\n"
        "        __import__('time').sleep(30); os._exit(0)\n"
        "    children += 1\n")
    assert "stopped after" in result.stdout and "Resource temporarily unavailable" in result.stdout
    assert int(result.stdout.split()[2]) < 8
    assert not result.timed_out  # the sleeping children die with the sandbox


def test_memory_blow_ups_fail_inside_the_sandbox(sandbox: Sandbox) -> None:
    at_once = sandbox.run("x = bytearray(8 << 30)")
    assert "MemoryError" in at_once.logs
    growing = sandbox.run("chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n")
    assert "MemoryError" in growing.logs
    assert sandbox.run("print('still fine')").stdout == "still fine\n"


def test_cpu_and_wall_clock_limits() -> None:
    quick = Sandbox(Limits(wall_seconds=20, cpu_seconds=1), slots=1)
    spinning = quick.run("while True: pass")
    assert spinning.exit_code is not None and not spinning.timed_out
    assert "CPU time limit" in spinning.logs
    sleepy = Sandbox(Limits(wall_seconds=2, cpu_seconds=5), slots=1).run("import time\ntime.sleep(60)")
    assert sleepy.timed_out and "time limit" in sleepy.logs


def test_output_and_file_sizes_are_bounded() -> None:
    small = Sandbox(Limits(output_chars=1000, file_bytes=1 << 20), slots=1)
    chatty = small.run("print('x' * 100000)")
    assert len(chatty.stdout) < 1100 and chatty.stdout.endswith("[output truncated]")
    big = small.run("open('big.bin', 'wb').write(b'x' * (4 << 20))")
    assert "File too large" in big.logs and [len(item.data) for item in big.created] == [1 << 20]


def test_without_bubblewrap_code_is_refused_not_run_unsandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "TOOL", "bwrap-is-not-installed")
    monkeypatch.setattr(runner, "_probed", False)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        Sandbox().run("print(1)")
    with pytest.raises(InvalidRequest) as refused:
        code_interpreter.check_available("tools[0]")
    assert refused.value.status_code == 400 and refused.value.param == "tools[0]"
    assert refused.value.code == "unsupported_tool" and "bwrap" in refused.value.message


def test_the_input_names_are_kept_safe(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nprint(sorted(os.listdir('.')))",
                         [("../../etc/x.csv", b"a"), ("x.csv", b"b"), ("..", b"c")])
    assert result.stdout.strip() == str(sorted(["x.csv", "x-1.csv", "file"]))


def test_the_usual_short_names_are_there_when_the_code_uses_them(sandbox: Sandbox) -> None:
    result = sandbox.run("print(np.arange(4).sum(), pd.Series([1, 3]).mean())\n"
                         "plt.plot([1, 2]); plt.savefig('a.png')\nprint('json' in dir())")
    assert result.stdout.split() == ["6", "2.0", "False"], result.logs
    assert [item.name for item in result.created] == ["a.png"]
