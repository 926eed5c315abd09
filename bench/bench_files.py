"""Files throughput: a 1 GB file up and down through the official SDK vs a file copy.

Starts a Hearth server (SQLite + local blobs, no models) with its data
directory on the same disk as the source file. Each round measures, in turn:

- the baselines: a durable copy (copy, then fsync: what Hearth does for every
  blob before its row commits), twice in a row, and a plain
  ``shutil.copyfile`` (which returns before a byte reaches the disk);
- ``client.files.create`` (one streamed multipart request) given an open file,
  as OpenAI's examples do, and given a path (which the SDK reads into memory
  whole before sending);
- ``client.uploads.upload_file_chunked`` (64 MB parts, then assembly);
- ``client.files.with_streaming_response.content`` into a file, and into
  /dev/null (what the server delivers when the client does not store it);
- the same upload and download with curl, a client that costs little CPU, to
  tell the server's speed from the Python client's.

The rounds are interleaved, because this machine's disk and memory speed
drift from minute to minute; every operation starts after a ``sync``, so none
pays for the writeback of the one before; the table gives each operation's
median. The server's peak resident memory (VmHWM) is read at the end.

    python bench/bench_files.py [--size-mb 1024] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from common import live_server, peak_rss_mib, timed

MiB = 1024 * 1024
# The baselines. A copy into memory the VM has just handed back to its host
# pays for every fresh page (about 2 s a GiB here); the same copy repeated at
# once reuses the pages the first one freed: that one is the disk's speed.
FRESH = "durable copy (copy, then fsync), into fresh memory"
DURABLE = "durable copy, repeated at once (the baseline)"
PLAIN = "plain copy (shutil.copyfile, no fsync)"


def durable_copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, MiB)
        dst.flush()
        os.fsync(dst.fileno())


def curl(*args: str) -> None:
    subprocess.run(["curl", "--silent", "--show-error", "--fail", "--header", "expect:", *args],
                   check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    size = args.size_mb * MiB

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hearth-bench-") as scratch:
        root = Path(scratch)
        source, target = root / "source.bin", root / "target.bin"
        with source.open("wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(MiB))
            # Flushed first, so no measurement competes with the source's writeback.
            fh.flush()
            os.fsync(fh.fileno())
        seconds: dict[str, list[float]] = defaultdict(list)
        with live_server([], HEARTH_MAX_FILE_BYTES=str(size + MiB), data_root=root) as server:
            client = server.client(timeout=3600)
            base = f"{server.base_url}/v1"
            auth = f"authorization: Bearer {server.api_key}"

            def download(file_id: str, into: Path) -> None:
                with client.files.with_streaming_response.content(file_id) as resp, \
                        into.open("wb") as out:
                    for chunk in resp.iter_bytes():
                        out.write(chunk)

            def record(name: str, action: Callable[[], object]) -> None:
                os.sync()
                seconds[name].append(timed(action)[0])
                target.unlink(missing_ok=True)

            def create(file: object) -> str:
                return client.files.create(file=file, purpose="user_data").id  # type: ignore[arg-type]

            def one_round() -> None:
                record(FRESH, lambda: durable_copy(source, target))
                record(DURABLE, lambda: durable_copy(source, target))
                record(PLAIN, lambda: shutil.copyfile(source, target))
                created: list[str] = []
                with source.open("rb") as opened:
                    record("upload: client.files.create(file=open(...))",
                           lambda: created.append(create(opened)))
                record("upload: client.files.create(file=Path(...))",
                       lambda: created.append(create(source)))
                file_id = created[0]
                record("upload: client.uploads.upload_file_chunked (64 MB parts)",
                       lambda: client.uploads.upload_file_chunked(
                           file=source, mime_type="application/octet-stream",
                           purpose="user_data"))
                record("download: client.files.content, streamed to a file",
                       lambda: download(file_id, target))
                record("download: client.files.content, streamed to /dev/null",
                       lambda: download(file_id, Path(os.devnull)))
                if shutil.which("curl"):
                    record("upload: curl -F", lambda: curl(
                        "-H", auth, "-F", "purpose=user_data", "-F", f"file=@{source}",
                        f"{base}/files"))
                    record("download: curl to /dev/null", lambda: curl(
                        "-H", auth, "-o", os.devnull, f"{base}/files/{file_id}/content"))
                for stored in client.files.list():
                    client.files.delete(stored.id)

            for _ in range(args.rounds):
                one_round()
            peak = peak_rss_mib(server.process.pid)

    median = {name: statistics.median(times) for name, times in seconds.items()}
    baselines = {DURABLE: "vs durable copy", FRESH: "vs durable copy into fresh memory",
                 PLAIN: "vs plain copy"}
    print(f"\n{args.size_mb} MiB file, server on SQLite + local blobs, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} interleaved rounds; server peak RSS {peak:.0f} MiB\n")
    print("| operation | seconds (median) | MB/s | " + " | ".join(baselines.values())
          + " | runs (s) |")
    print("|---|---:|---:|" + "---:|" * len(baselines) + "---|")
    for name, value in median.items():
        ratios = " | ".join(f"{median[baseline] / value:.2f}x" for baseline in baselines)
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(f"| {name} | {value:.2f} | {size / value / 1e6:.0f} | {ratios} | {runs} |")
    print(json.dumps({name: round(size / s / 1e6) for name, s in median.items()}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
