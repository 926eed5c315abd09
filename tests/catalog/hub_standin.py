"""A loopback stand-in for a Hugging Face-style hub's file API, for pull tests.

It serves ``/api/models/{repo}`` (the current commit), ``/api/models/{repo}/tree/{rev}``
(the file listing in pages of two, linked by a ``Link: rel="next"`` header,
large files with their LFS sha256, every file with its git blob id) and
``/{repo}/resolve/{rev}/{path}`` with HTTP Range. A file can be served with
other bytes than the ones published (``corrupt``), or cut off halfway the
first time it is asked for (``cut_once``). Every download request is logged
with its Range header.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REVISION = "0123456789abcdef0123456789abcdef01234567"
PAGE = 2
LFS_OVER = 1000  # files larger than this are LFS files, with a published sha256


@dataclass
class Hub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    corrupt: dict[tuple[str, str], bytes] = field(default_factory=dict)
    cut_once: set[tuple[str, str]] = field(default_factory=set)
    gated: set[str] = field(default_factory=set)
    downloads: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""

    def listing(self, repo: str) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = []
        for path, data in sorted(self.repos[repo].items()):
            entry: dict[str, object] = {
                "type": "file", "path": path, "size": len(data),
                "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
            if len(data) > LFS_OVER:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        folders = sorted({path.rsplit("/", 1)[0] for path in self.repos[repo] if "/" in path})
        return [{"type": "directory", "path": folder, "oid": "0" * 40, "size": 0} for folder in folders] + entries


class _Handler(BaseHTTPRequestHandler):
    hub: Hub

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        parts = split.path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo = "/".join(parts[2:4])
            if repo in hub.gated:
                return self._json(401, {"error": "Access to this model is restricted"})
            if repo not in hub.repos:
                return self._json(404, {"error": "Repository not found"})
            if len(parts) == 4:
                return self._json(200, {"id": repo, "sha": REVISION,
                                        "siblings": [{"rfilename": p} for p in sorted(hub.repos[repo])]})
            if parts[4] == "tree" and parts[5] == REVISION:
                assert parse_qs(split.query).get("recursive") == ["true"]
                entries = hub.listing(repo)
                start = int(parse_qs(split.query).get("cursor", ["0"])[0])
                headers = {}
                if start + PAGE < len(entries):
                    headers["Link"] = (f'<{hub.url}/api/models/{repo}/tree/{REVISION}?recursive=true'
                                       f'&cursor={start + PAGE}>; rel="next"')
                return self._json(200, entries[start:start + PAGE], headers)
            return self._json(404, {"error": "Revision not found"})
        repo, rest = "/".join(parts[:2]), parts[2:]
        if rest[:2] != ["resolve", REVISION] or repo not in hub.repos:
            return self._json(404, {"error": "Entry not found"})
        path = "/".join(rest[2:])
        if path not in hub.repos[repo]:
            return self._json(404, {"error": "Entry not found"})
        data = hub.corrupt.get((repo, path), hub.repos[repo][path])
        asked = self.headers.get("Range")
        hub.downloads.append((path, asked))
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if (repo, path) in hub.cut_once:
            hub.cut_once.discard((repo, path))
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@contextmanager
def serve(hub: Hub) -> Iterator[Hub]:
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
