"""A live server of its own for the image tests: the tiny pipeline imported, and moderation.

The tiny pipeline is built on the fly and registered the way a user would
(``hearth models import``: copied into a models directory of this session,
written to the data directory's user catalog), so the suite's main server
keeps its start-up time and its models.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from hearth.catalog.importing import import_model
from hearth.catalog.provision import ModelStore
from tests.conftest import LiveServer, pulled_model_dir, start_server, stop_server
from tests.images.tiny_pipeline import MODEL_ID, build_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd-source"))


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_dir: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("image-models")
    # The moderation model checks prompts; it is linked from the shared models directory.
    (models / "moderation-local").symlink_to(pulled_model_dir("moderation-local"))
    data = tmp_path_factory.mktemp("hearth-images")
    import_model(tiny_pipeline_dir, data_dir=data, store=ModelStore(models), name=MODEL_ID)
    live = start_server(data, models, HEARTH_DEFAULT_MODELS=json.dumps(["moderation-local", MODEL_ID]),
                        HEARTH_INFERENCE_THREADS="2")
    yield live
    stop_server(live)
    assert "Traceback" not in live.log(), live.log()


@pytest.fixture(scope="session")
def image_client(image_server: LiveServer) -> OpenAI:
    return image_server.client(timeout=120)


@pytest.fixture(scope="session")
def image_http(image_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=image_server.base_url,
                      headers={"Authorization": f"Bearer {image_server.api_key}"}, timeout=120) as raw:
        yield raw
