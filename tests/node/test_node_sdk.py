"""The official Node SDK (the `openai` npm package) against the live server.

The Node tests live beside this file (``*.test.mjs``, Node's built-in test
runner) and cover what people most often do from Node: speech streamed to a
file, transcription (verbose_json with words, srt), chat (streamed, tools,
json_schema, ``chat.completions.parse`` with zod), embeddings (which the Node
SDK asks for in base64), moderations, files and uploads. This test installs
the locked packages on first use (``npm ci``) and runs them with Node's own
test runner against the session's server; Node's output is the failure message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer

HERE = Path(__file__).parent


def _node_modules_current() -> bool:
    """Installed, and from the lockfile as it is now (npm ci writes this copy of it last)."""
    installed = HERE / "node_modules" / ".package-lock.json"
    return installed.exists() and installed.stat().st_mtime >= (HERE / "package-lock.json").stat().st_mtime


@pytest.fixture(scope="module")
def node_packages() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js 20 or newer and npm are needed for the Node SDK tests (Debian: apt-get install nodejs npm)")
    if not _node_modules_current():
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], check=False, cwd=HERE, capture_output=True,
                                   text=True, timeout=600)
        if installed.returncode != 0:
            pytest.fail(f"npm ci failed:\n{installed.stdout}\n{installed.stderr}")
    return node


def test_the_official_node_sdk_drives_the_server(server: LiveServer, node_packages: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=f"{server.base_url}/v1", OPENAI_API_KEY=server.api_key, NO_COLOR="1")
    tests = sorted(path.name for path in HERE.glob("*.test.mjs"))
    assert tests, "no Node tests found"
    ran = subprocess.run([node_packages, "--test", "--test-reporter=spec", *tests], check=False, cwd=HERE,
                         env=env, capture_output=True, text=True, timeout=900)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "# fail 0" in output or "ℹ fail 0" in output, output
