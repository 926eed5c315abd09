"""Run every benchmark in this folder, one after another (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_speech.py", "bench_transcription.py", "bench_chat.py", "bench_embeddings.py",
           "moderation_eval.py", "bench_files.py", "bench_batch.py", "bench_chat_memory.py",
           "bench_images.py", "bench_sandbox.py", "bench_fine_tuning.py"]


def main() -> int:
    failed = 0
    for script in SCRIPTS:
        if not (HERE / script).exists():
            continue
        print(f"\n## {script}\n", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script)], check=False,
                                 cwd=HERE).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
