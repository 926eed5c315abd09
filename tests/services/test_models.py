"""ModelService: the listing, name resolution by kind, and its errors, over a registry of fakes."""

from __future__ import annotations

import asyncio

import pytest

from hearth.errors import InvalidRequest, NotFound
from hearth.models.protocol import Model, ModelList
from tests.services.conftest import CREATED, Hearth


def test_list_names_every_pulled_model_by_id_then_alias(hearth: Hearth) -> None:
    """Ids come first, then aliases; a catalog model that is not pulled is left out under every name."""
    listing = hearth.models.list()

    assert ModelList.model_validate(listing.model_dump(mode="json")) == listing
    assert [model.id for model in listing.data] == [
        "fake-llama", "fake-kokoro", "fake-whisper", "fake-minilm", "fake-moderation",
        "gpt-4o-mini", "tts-1", "gpt-4o-mini-tts", "whisper-1", "text-embedding-3-small", "omni-moderation-latest"]
    assert {(model.created, model.owned_by) for model in listing.data} == {(CREATED, "hearth")}


def test_retrieve_answers_under_the_name_asked_for(hearth: Hearth) -> None:
    """An alias is retrieved under the alias, not the id it stands for (loaded, on the CPU)."""
    assert hearth.models.retrieve("whisper-1") == Model(id="whisper-1", created=CREATED, owned_by="hearth",
                                                        loaded=True, device="cpu")


@pytest.mark.parametrize("name", ["no-such-model", "gpt-4o", "unpulled-llama"])
def test_unknown_and_unpulled_models_are_not_found(hearth: Hearth, name: str) -> None:
    """A name not in the catalog and a model not pulled are both model_not_found (404) on `model`."""
    with pytest.raises(NotFound) as refused:
        hearth.models.retrieve(name)

    assert (refused.value.param, refused.value.code, refused.value.status_code) == ("model", "model_not_found", 404)


def test_servable_lists_the_pulled_models_of_one_kind(hearth: Hearth) -> None:
    """Only pulled models of the kind asked for are servable."""
    assert [spec.id for spec in hearth.models.servable("chat")] == ["fake-llama"]
    assert len(hearth.models.servable()) == 5


def test_load_resolves_an_alias_of_the_right_kind(hearth: Hearth) -> None:
    """load() gives the loaded model behind an alias when its kind fits."""
    loaded = asyncio.run(hearth.models.load("gpt-4o-mini", "chat"))

    assert loaded is hearth.loaded("fake-llama")


def test_a_model_of_another_kind_is_not_supported(hearth: Hearth) -> None:
    """Asking a speech model for chat is a 400 model_not_supported naming the model's kind."""
    with pytest.raises(InvalidRequest) as refused:
        hearth.models.resolve("tts-1", "chat")

    assert (refused.value.param, refused.value.code, refused.value.status_code) == (
        "model", "model_not_supported", 400)
    assert "speech model" in refused.value.message


def test_a_model_whose_files_are_missing_is_not_found(hearth: Hearth) -> None:
    """The registry's ModelNotPulled, met when loading, becomes model_not_found."""
    spec = hearth.registry.catalog.resolve("unpulled-llama")

    with pytest.raises(NotFound) as refused:
        asyncio.run(hearth.models.get(spec))

    assert refused.value.code == "model_not_found"
