"""Images benchmark: seconds per 512x512 picture through Hearth vs the diffusers pipeline called directly.

One run builds a randomly initialised Stable Diffusion pipeline (no weights
can be downloaded here), imports it into a fresh server as a user would, and
times the same work both ways with the same number of threads:

- direct: ``pipeline(prompt, 512x512, steps, guidance 0)`` in a process of
  its own (so its peak memory is its own);
- Hearth: ``client.images.generate(model=..., size="512x512",
  response_format="b64_json")`` against the live server; this includes PNG
  encoding, base64, JSON and HTTP.

After one warm-up each, the two alternate picture by picture, so both see
the same load from neighbours on a shared machine. Each side reports wall
seconds and CPU seconds (the whole process, every thread: for Hearth the
server's HTTP, metering and encoding too); CPU time barely moves with a
neighbour's load, wall time does. ``BENCH_IMAGES_ARCH=sd-turbo`` builds the pipeline at
SD-Turbo's real size (SD 2.1 UNet, OpenCLIP-H text encoder, the SD VAE;
about 5 GB of float32) instead of the tiny test one; ``BENCH_IMAGES_N`` sets N
(5), ``BENCH_IMAGES_THREADS`` the threads (2), ``BENCH_IMAGES_STEPS`` the steps (2);
``BENCH_IMAGES_HEARTH_FIRST=1`` has Hearth paint first in each pair.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import REPO, peak_rss_mib, timed

from tests.conftest import start_server, stop_server
from tests.images.tiny_pipeline import build_tiny_pipeline

ARCH = os.environ.get("BENCH_IMAGES_ARCH", "tiny")
N = int(os.environ.get("BENCH_IMAGES_N", "5"))
THREADS = int(os.environ.get("BENCH_IMAGES_THREADS", "2"))
STEPS = int(os.environ.get("BENCH_IMAGES_STEPS", "2"))
# Which side paints first in each pair (to see whether the order matters on a loaded machine).
HEARTH_FIRST = os.environ.get("BENCH_IMAGES_HEARTH_FIRST", "") == "1"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
MODEL = "bench-sd"


def build_sd_turbo_sized(directory: Path) -> Path:
    """SD-Turbo's architecture (Stable Diffusion 2.1 at 512), randomly initialised."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    build_tiny_pipeline(directory / "scratch")  # for its tokenizer files
    tokenizer = CLIPTokenizer.from_pretrained(directory / "scratch" / "tokenizer")
    vocab = len(tokenizer)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
        vocab_size=vocab, max_position_embeddings=77, projection_dim=512, hidden_act="gelu",
        bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True, block_out_channels=(320, 640, 1280, 1280))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                                beta_schedule="scaled_linear", timestep_spacing="trailing",
                                                steps_offset=1)
    target = directory / "pipeline"
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(target)
    return target


def direct_worker(directory: Path) -> None:
    """Runs in its own process: loads the pipeline, then paints one picture per line read on stdin."""
    import torch
    from diffusers import DiffusionPipeline

    torch.set_num_threads(THREADS)
    pipeline = DiffusionPipeline.from_pretrained(directory, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    def paint() -> None:
        torch.set_num_threads(THREADS)
        with torch.inference_mode():
            pipeline(PROMPT, width=512, height=512, num_inference_steps=STEPS, guidance_scale=0.0)

    # Called from a worker thread, as a server calls it (and as Hearth's model runner does): on a
    # loaded machine the main thread paints measurably slower (see docs/benchmarks.md).
    painter = ThreadPoolExecutor(1)
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        painter.submit(paint).result()
        print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                          "peak_rss_mib": peak_rss_mib(os.getpid())}), flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    from hearth.catalog.importing import import_model
    from hearth.catalog.provision import ModelStore

    with tempfile.TemporaryDirectory(prefix="hearth-bench-images-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        source = (build_sd_turbo_sized(root / "build") if ARCH == "sd-turbo"
                  else build_tiny_pipeline(root / "build"))
        print(f"built the {ARCH} pipeline in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        models, data = root / "models", root / "data"
        models.mkdir()
        data.mkdir()
        import_model(source, data_dir=data, store=ModelStore(models), name=MODEL, link=True)

        worker = subprocess.Popen([sys.executable, __file__, "--direct", str(source)], cwd=REPO / "bench",
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert worker.stdin is not None and worker.stdout is not None
        json.loads(worker.stdout.readline())
        server = start_server(data, models, HEARTH_DEFAULT_MODELS=json.dumps([MODEL]),
                              HEARTH_INFERENCE_THREADS=str(THREADS))
        direct_runs: list[dict] = []
        hearth_runs: list[dict] = []
        try:
            client = server.client(timeout=1800)

            def direct_one() -> dict:
                worker.stdin.write("go\n")  # type: ignore[union-attr]
                return json.loads(worker.stdout.readline())  # type: ignore[union-attr]

            def hearth_one() -> dict:
                cpu = cpu_seconds(server.process.pid)
                wall, _ = timed(lambda: client.images.generate(
                    model=MODEL, prompt=PROMPT, size="512x512", quality="medium",
                    response_format="b64_json"))
                return {"wall": wall, "cpu": cpu_seconds(server.process.pid) - cpu}

            direct_one(), hearth_one()  # warm-up
            # Interleaved, so both sides see the same neighbours' load on a shared machine.
            for _ in range(N):
                if HEARTH_FIRST:
                    hearth_runs.append(hearth_one())
                direct_runs.append(direct_one())
                if not HEARTH_FIRST:
                    hearth_runs.append(hearth_one())
            server_peak = peak_rss_mib(server.process.pid)
        finally:
            stop_server(server)
            worker.stdin.close()
            worker.wait(timeout=60)

    def summary(runs: list[dict]) -> dict:
        return {"wall_median": round(statistics.median(r["wall"] for r in runs), 3),
                "cpu_median": round(statistics.median(r["cpu"] for r in runs), 3),
                "wall": [round(r["wall"], 3) for r in runs], "cpu": [round(r["cpu"], 3) for r in runs]}

    direct_s, hearth_s = summary(direct_runs), summary(hearth_runs)
    print(json.dumps({
        "arch": ARCH, "n": N, "threads": THREADS, "steps": STEPS, "direct": direct_s, "hearth": hearth_s,
        "overhead_wall_pct": round(100 * (hearth_s["wall_median"] / direct_s["wall_median"] - 1), 1),
        "overhead_cpu_pct": round(100 * (hearth_s["cpu_median"] / direct_s["cpu_median"] - 1), 1),
        "peak_rss_mib": {"direct_process": round(max(r["peak_rss_mib"] for r in direct_runs)),
                         "hearth_server": round(server_peak)},
        "load_average": os.getloadavg(),
    }, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--direct":
        direct_worker(Path(sys.argv[2]))
    else:
        main()
