"""Vector stores benchmark: indexing throughput, search latency at 10,000 chunks, and recall@5.

Through the official SDK against a live server (the embedding model only), on two stacks:
- `sqlite`: SQLite and local blobs; the index is LanceDB in the data directory;
- `postgres`: PostgreSQL on 127.0.0.1:5432 and S3 served by moto on loopback; the index is LanceDB in
  that bucket (moto is a Python emulator: its latency is part of what is measured).

Measures, per stack:
- indexing: a generated PDF of `VS_PDF_PAGES` pages (default 10, ~350 words a page), auto chunking
  (800/400), from attaching it to the store's `completed`: pages per second (and chunks per second);
- recall@5: 25 questions, each answered by one of 25 fact files, in a store that also holds
  `VS_DISTRACTORS` (default 200) real-embedded ledger records and, per fact, a file of three near
  misses (the same sentence about other subjects, other numbers; static chunking, 100 tokens);
  whether the answer's file is the first result (recall@1) and among the top 5 (recall@5),
  vector-only (`ranker: none`) and hybrid (vectors fused with BM25);
- search latency at 10,000 chunks: 40 files attached through the API whose chunks are then replaced,
  in the server's own index, by 250 synthetic chunks each (random unit vectors: embedding 10,000 real
  chunks takes this shared 2-core machine hours, and a search's cost does not depend on what the
  vectors mean), plus the fact files; p50 / p95 over 60 API searches one at a time (each embeds its
  query), vector-only and hybrid.

`VS_STACKS` picks stacks (default "sqlite,postgres").
"""

from __future__ import annotations

import io
import os
import random
import re
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, live_server
from openai import OpenAI

sys.path.insert(0, str(REPO))

EMBEDDING_MODEL = "all-minilm-l6-v2"
PDF_PAGES = int(os.environ.get("VS_PDF_PAGES", "10"))
DISTRACTORS = int(os.environ.get("VS_DISTRACTORS", "200"))
STACKS = os.environ.get("VS_STACKS", "sqlite,postgres").split(",")
FILLER_FILES, CHUNKS_PER_FILE = 40, 250
SEARCHES = 60
# Hybrid ranking on, so `ranker: auto` is hybrid and `ranker: none` vectors only.
HYBRID = {"HEARTH_VECTOR_STORE_HYBRID_SEARCH": "true"}

# The question set: a fact per file, a question whose answer only that file holds. Each fact's "{}" is its
# subject; the distractors hold the same sentence about other subjects with other numbers (near misses,
# where meaning alone cannot tell them apart and the subject's name must).
FACTS = [
    ("The night ferry to {} leaves from pier 9 at 23:15.", "Vallholm", "When does the night ferry to Vallholm leave?"),
    ("Doctor {} discovered the blue lichen species in the Karst caves in 1987.", "Amara Osei",
     "What did Doctor Amara Osei discover?"),
    ("The {} cafe closes early on Wednesdays at 14:00.", "Copper Kettle", "When does the Copper Kettle cafe close?"),
    ("Project {}'s budget for 2026 is 2.4 million euros.", "Nightjar", "What is the budget of project Nightjar?"),
    ("The {} choir rehearses in the old chapel every Tuesday evening.", "Brightwater school",
     "Where does the Brightwater school choir rehearse?"),
    ("A {} password reset link expires after 45 minutes.", "Quillon", "How long is a Quillon password reset valid?"),
    ("Mount {}'s summit hut has twelve bunk beds and no running water.", "Elbrin",
     "How many beds does the hut on Mount Elbrin have?"),
    ("The {} recipe for plum dumplings needs 500 grams of quark and two eggs.", "Aunt Mirela",
     "How much quark does Aunt Mirela's plum dumpling recipe need?"),
    ("At {}, invoices must be approved by the finance lead within five working days.", "Tessaract Ltd",
     "How fast must invoices be approved at Tessaract Ltd?"),
    ("The {} library lends e-readers for up to three weeks.", "Oberhain",
     "How long does the Oberhain library lend e-readers?"),
    ("The solar array on the {} warehouse produces about 310 megawatt hours a year.", "Kestrel Road",
     "How much does the Kestrel Road warehouse solar array produce?"),
    ("The falcon named {} was released back into the wild in May.", "Brisk", "When was the falcon Brisk released?"),
    ("Backups of the {} database run every night at 02:30 UTC.", "Ledgerline",
     "When do Ledgerline database backups run?"),
    ("The {} violin workshop uses spruce from the Val di Fiemme forest.", "Castellani",
     "Where does the Castellani workshop get its spruce?"),
    ("Visitors to the {} observatory must book the telescope two days ahead.", "Hohe Warte",
     "How far ahead must the Hohe Warte telescope be booked?"),
    ("The {} marathon route passes the cathedral at kilometre 31.", "Wrexford",
     "At which kilometre does the Wrexford marathon pass the cathedral?"),
    ("Employees of {} receive 28 days of paid leave.", "Orbisoft", "How much paid leave do Orbisoft employees get?"),
    ("The river {} flooded the lower town in the spring of 1923.", "Lenne", "When did the river Lenne flood?"),
    ("The {} robot vacuum's battery lasts roughly 95 minutes on eco mode.", "Dustro X2",
     "How long does the Dustro X2 battery last?"),
    ("Grandmother {}'s garden has 14 apple trees.", "Hilde", "How many apple trees are in Hilde's garden?"),
    ("The {} server room must be kept between 18 and 24 degrees Celsius.", "Frankfurt",
     "What temperature must the Frankfurt server room keep?"),
    ("The {} chess club meets at the Lantern pub on the first Monday.", "Millbrook",
     "Where does the Millbrook chess club meet?"),
    ("Shipping to {} takes seven to ten business days.", "Iceland", "How long does shipping to Iceland take?"),
    ("The {} museum's oldest exhibit is a bronze comb from around 1200 BC.", "Harwick",
     "What is the oldest exhibit of the Harwick museum?"),
    ("The bridge over the {} was repainted green in 2019.", "Saale", "What colour was the bridge over the Saale painted?"),
]
# Other subjects, for the near misses.
_OTHERS = ("Brekkvik", "Jonas Feld", "Tin Cup", "Skylark", "Riverside", "Pellam", "Torvik", "Uncle Basil", "Mardon Inc",
           "Unterau", "Heron Lane", "Swift", "Paybridge", "Morandi", "Sternberg", "Ashby", "Lumatec", "Wupper",
           "Cleanix 5", "Greta", "Leipzig", "Oakhill", "Norway", "Dunmore", "Mulde")
NEAR_MISSES = 6


def fact_text(index: int) -> str:
    template, subject, _ = FACTS[index]
    return template.format(subject)


def near_misses(index: int) -> str:
    """The fact's sentence about other subjects, its numbers changed."""
    rng = random.Random(index)
    template = FACTS[index][0]
    lines = []
    for _ in range(NEAR_MISSES):
        sentence = template.format(rng.choice([o for o in _OTHERS if o != FACTS[index][1]]))
        lines.append(re.sub(r"\d", lambda _: str(rng.randint(0, 9)), sentence))
    return "\n".join(lines)


_WORDS = ["amber", "basalt", "cedar", "delta", "ember", "falcon", "granite", "harbor", "indigo", "juniper", "kestrel", "lantern", "meadow", "nickel", "orchard", "pewter", "quarry", "russet", "saffron", "tundra", "umber", "violet", "willow", "yarrow", "zephyr", "anchor", "beacon", "copper", "drift", "estuary", "fjord", "glacier", "heath", "inlet", "jetty", "knoll", "lagoon", "moraine"]


def records(seed: int, count: int, words: int = 40) -> list[str]:
    """Ledger records (about 60 tokens each with the default length), none answering a question."""
    rng = random.Random(seed)
    return [f"Ledger record {seed}-{i}: shipment {rng.randint(1000, 9999)} of {rng.randint(2, 90)} crates; notes: "
            + " ".join(rng.choice(_WORDS) for _ in range(words)) + "." for i in range(count)]


def pdf_bytes(pages: int) -> bytes:
    from fpdf import FPDF

    rng = random.Random(7)
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for page in range(pages):
        pdf.add_page()
        text = " ".join(rng.choice(_WORDS) for _ in range(350))
        pdf.multi_cell(0, 6, f"Page {page + 1}. {text}")
    return bytes(pdf.output())


def settle(client: OpenAI, store_id: str) -> float:
    started = time.perf_counter()
    while (store := client.vector_stores.retrieve(store_id)).status == "in_progress":
        time.sleep(0.2)
    assert store.file_counts.failed == 0, store
    return time.perf_counter() - started


def chunk_count(database_url: str, store_id: str) -> int:
    from sqlalchemy import func, select

    from hearth.store.db import Database
    from hearth.store.vector_stores import VectorStoreFileRow

    db = Database(database_url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.sum(VectorStoreFileRow.chunks))
                                      .where(VectorStoreFileRow.vector_store_id == store_id)) or 0)
    finally:
        db.dispose()


def upload(client: OpenAI, name: str, data: bytes) -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


def settings_of(database_url: str, data_dir: Path, env: dict[str, str]) -> Any:
    from hearth.settings import Settings

    names = {"HEARTH_BLOB_STORE": "blob_store", "HEARTH_S3_ENDPOINT_URL": "s3_endpoint_url",
             "HEARTH_S3_BUCKET": "s3_bucket", "HEARTH_S3_REGION": "s3_region",
             "HEARTH_S3_ACCESS_KEY_ID": "s3_access_key_id", "HEARTH_S3_SECRET_ACCESS_KEY": "s3_secret_access_key"}
    return Settings(data_dir=data_dir, database_url=database_url,
                    **{field: env[name] for name, field in names.items() if name in env})


def fill_index(settings: Any, store_id: str, file_ids: list[str]) -> None:
    """Each file's chunks in the server's own index replaced by CHUNKS_PER_FILE synthetic ones."""
    import numpy as np

    from hearth.vector_stores.index import Chunk, ChunkIndex

    index = ChunkIndex.from_settings(settings)
    rng = np.random.default_rng(3)
    for n, file_id in enumerate(file_ids):
        vectors = rng.standard_normal((CHUNKS_PER_FILE, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = records(1000 + n, CHUNKS_PER_FILE, words=60)
        index.replace_file(EMBEDDING_MODEL, store_id, file_id,
                           [Chunk(store_id, file_id, i, text, vectors[i]) for i, text in enumerate(texts)])
    index.optimize()  # what the periodic sweep does: compact, and fold the new rows into the text index


def latencies(client: OpenAI, store_id: str, ranker: str) -> dict[str, float]:
    took = []
    for i in range(SEARCHES):
        query = FACTS[i % len(FACTS)][2] if i % 2 else f"shipment of {i} crates of {_WORDS[i % len(_WORDS)]}"
        started = time.perf_counter()
        client.vector_stores.search(store_id, query=query, max_num_results=5, ranking_options={"ranker": ranker})
        took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(took), "p95_ms": statistics.quantiles(took, n=20)[18]}


def recall(client: OpenAI, store_id: str, facts: list[str], ranker: str) -> str:
    """Recall@1 / recall@5: how often the answer's file is the first result / among the first five."""
    first = top5 = 0
    for file_id, (_, _, question) in zip(facts, FACTS, strict=True):
        found = [item.file_id for item in client.vector_stores.search(
            store_id, query=question, max_num_results=5, ranking_options={"ranker": ranker}).data]
        first += found[:1] == [file_id]
        top5 += file_id in found
    return f"{first / len(FACTS):.2f} / {top5 / len(FACTS):.2f}"


def run_stack(client: OpenAI, database_url: str, settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Indexing throughput.
    pdf = upload(client, "bench.pdf", pdf_bytes(PDF_PAGES))
    store = client.vector_stores.create(name="pdf")
    client.vector_stores.files.create(store.id, file_id=pdf)
    seconds = settle(client, store.id)
    chunks = chunk_count(database_url, store.id)
    out["indexing"] = {"pages": PDF_PAGES, "seconds": seconds, "pages_per_s": PDF_PAGES / seconds,
                       "chunks": chunks, "chunks_per_s": chunks / seconds}
    print("indexing", out["indexing"], flush=True)

    # Recall@5 among real-embedded distractors.
    static = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    facts = [upload(client, f"fact{i}.txt", fact_text(i).encode()) for i in range(len(FACTS))]
    distractors = [upload(client, f"ledger{i}.txt", "\n".join(records(i, DISTRACTORS // 10)).encode())
                   for i in range(10)]
    distractors += [upload(client, f"near{i}.txt", near_misses(i).encode()) for i in range(len(FACTS))]
    quality = client.vector_stores.create(name="quality")
    client.vector_stores.file_batches.create(quality.id, file_ids=facts + distractors, chunking_strategy=static)
    seconds = settle(client, quality.id)
    out["recall"] = {"chunks": chunk_count(database_url, quality.id), "build_seconds": seconds,
                     **{f"recall_at_1_5_{name}": recall(client, quality.id, facts, ranker)
                        for name, ranker in (("vector", "none"), ("hybrid", "auto"))}}
    print("recall", out["recall"], flush=True)

    # Search latency at 10,000 chunks.
    fillers = [upload(client, f"filler{i}.txt", f"Filler {i}.".encode()) for i in range(FILLER_FILES)]
    big = client.vector_stores.create(name="big")
    client.vector_stores.file_batches.create(big.id, file_ids=fillers + facts, chunking_strategy=static)
    settle(client, big.id)
    fill_index(settings, big.id, fillers)
    chunks = FILLER_FILES * CHUNKS_PER_FILE + chunk_count(database_url, big.id) - FILLER_FILES
    out["latency"] = {"chunks": chunks, **{name: latencies(client, big.id, ranker)
                                           for name, ranker in (("vector", "none"), ("hybrid", "auto"))},
                      "recall_at_1_5_vector": recall(client, big.id, facts, "none"),
                      "recall_at_1_5_hybrid": recall(client, big.id, facts, "auto")}
    print("latency", out["latency"], flush=True)
    return out


def main() -> None:
    results = {}
    if "sqlite" in STACKS:
        with live_server([EMBEDDING_MODEL], **HYBRID) as server:
            url = f"sqlite:///{Path(server.data_dir) / 'hearth.db'}"
            results["sqlite"] = run_stack(server.client(), url, settings_of(url, Path(server.data_dir), {}))
    if "postgres" in STACKS:
        import psycopg
        from moto.server import ThreadedMotoServer

        from tests.conftest import _free_port

        name = f"hearth_bench_{secrets.token_hex(4)}"
        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        port = _free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        endpoint = f"http://127.0.0.1:{port}"
        bucket = name.replace("_", "-")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        env = {"HEARTH_DATABASE_URL": url, "HEARTH_BLOB_STORE": "s3", "HEARTH_S3_ENDPOINT_URL": endpoint,
               "HEARTH_S3_BUCKET": bucket, "HEARTH_S3_REGION": "us-east-1", "HEARTH_S3_ACCESS_KEY_ID": "t",
               "HEARTH_S3_SECRET_ACCESS_KEY": "t"}
        try:
            with live_server([EMBEDDING_MODEL], **env, **HYBRID) as server:
                results["postgres"] = run_stack(server.client(), url, settings_of(url, Path(server.data_dir), env))
        finally:
            moto.stop()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(results)


if __name__ == "__main__":
    main()
