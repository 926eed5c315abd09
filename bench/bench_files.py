"""Files throughput: a 1 GB file up and down through the official SDK vs a plain copy.

Starts a Hearth server (SQLite + local blobs, no models) on a scratch data
directory on the same disk as the source file, then measures:

- ``shutil.copyfile`` of the file (the disk's own speed, the baseline);
- ``client.files.create`` (one streamed multipart request);
- ``client.uploads.upload_file_chunked`` (64 MB parts, then assembly);
- ``client.files.content`` streamed to a file;

and the server's peak resident memory (VmHWM) after the uploads and after the
download. Prints a markdown table.

    python bench/bench_files.py [--size-mb 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import live_server, peak_rss_mib

MiB = 1024 * 1024


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def best_of_two(action) -> float:
    return min(timed(action), timed(action))


def durable_copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, MiB)
        dst.flush()
        os.fsync(dst.fileno())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    size = args.size_mb * MiB

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hearth-bench-") as scratch:
        root = Path(scratch)
        source = root / "source.bin"
        with source.open("wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(MiB))
            # Flushed first, so no measurement competes with the source's writeback.
            fh.flush()
            os.fsync(fh.fileno())
        rows: list[tuple[str, float, str]] = []
        with live_server([], HEARTH_MAX_FILE_BYTES=str(size + MiB), data_root=root) as server:
            client = server.client(timeout=3600)
            rows.append(("plain copy (shutil.copyfile)",
                         best_of_two(lambda: shutil.copyfile(source, root / "copy.bin")), "-"))
            # Hearth makes every blob durable before its row commits; so does this copy.
            rows.append(("durable copy (copy, then fsync)",
                         best_of_two(lambda: durable_copy(source, root / "copy.bin")), "-"))
            (root / "copy.bin").unlink()

            created = {}
            rows.append(("upload: client.files.create",
                         timed(lambda: created.update(file=client.files.create(
                             file=source, purpose="user_data"))),
                         f"{peak_rss_mib(server.process.pid):.0f}"))
            rows.append(("upload: client.uploads.upload_file_chunked (64 MB parts)",
                         timed(lambda: client.uploads.upload_file_chunked(
                             file=source, mime_type="application/octet-stream",
                             purpose="user_data")),
                         f"{peak_rss_mib(server.process.pid):.0f}"))

            def download() -> None:
                with client.files.with_streaming_response.content(created["file"].id) as resp, \
                        (root / "download.bin").open("wb") as out:
                    for chunk in resp.iter_bytes(MiB):
                        out.write(chunk)

            rows.append(("download: client.files.content (streamed)", timed(download),
                         f"{peak_rss_mib(server.process.pid):.0f}"))
            assert (root / "download.bin").stat().st_size == size

    copy_seconds, durable_seconds = rows[0][1], rows[1][1]
    print(f"\n{args.size_mb} MiB file, server on SQLite + local blobs "
          f"({os.cpu_count()} CPUs)\n")
    print("| operation | seconds | MB/s | vs copy | vs durable copy | server peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.2f} | {size / seconds / 1e6:.0f} | "
              f"{copy_seconds / seconds:.2f}x | {durable_seconds / seconds:.2f}x | {rss} |")
    print(json.dumps({name: round(size / s / 1e6) for name, s, _ in rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
