"""POST /v1/images/generations, /v1/images/edits, /v1/images/variations; GET a signed image link."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ValidationError

from hearth.caller import Caller
from hearth.errors import InvalidRequest, invalid_request
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.disconnect import unless_client_leaves
from hearth.http.multipart import StreamingForm
from hearth.http.openapi import multipart_body
from hearth.http.sse import sse_typed_response
from hearth.images.pictures import Upload
from hearth.images.protocol import (
    CreateImageRequest,
    ImageEditForm,
    ImagesResponse,
    ImageVariationForm,
)
from hearth.images.service import GPT_MAX_BYTES, ImageService

router = APIRouter(tags=["images"])
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}}
Images = Annotated[ImageService, Depends(provide(ImageService))]
# Logged when the client left before its pictures were ready (nginx's convention).
Form = TypeVar("Form", bound=BaseModel)


@router.post("/images/generations", dependencies=[Depends(require_json)], responses=_RESPONSES,
             response_model=ImagesResponse, response_model_exclude_none=True)
async def create_image(body: CreateImageRequest, request: Request, caller: ProjectCaller,
                       images: Images) -> Any:
    plan = images.plan_generation(body)
    return await _answer(plan, request, caller, images)


@router.post("/images/edits", response_model=ImagesResponse, response_model_exclude_none=True,
             responses=_RESPONSES,
             openapi_extra=multipart_body(ImageEditForm, {
                 "image": "The image(s) to edit: one square PNG under 4 MB for dall-e-2; up to 16 "
                          "PNG, WebP or JPEG images under 50 MB for the GPT image models.",
                 "mask": "Optional PNG, the image's size: its fully transparent pixels mark where "
                         "to edit."}))
async def create_image_edit(request: Request, caller: ProjectCaller, images: Images) -> Any:
    files, fields = await _read_form(request, {"image", "image[]", "mask"})
    form = _parse(ImageEditForm, fields)
    pictures = [upload for upload in files if upload.param.startswith("image")]
    if len(pictures) > 1:
        pictures = [Upload(f"image[{i}]", p.filename, p.data) for i, p in enumerate(pictures)]
    masks = [upload for upload in files if upload.param == "mask"]
    if len(masks) > 1:
        raise InvalidRequest("Only one mask can be sent.", param="mask")
    plan = await images.plan_edit(form, pictures, masks[0] if masks else None)
    return await _answer(plan, request, caller, images)


@router.post("/images/variations", response_model=ImagesResponse, response_model_exclude_none=True,
             openapi_extra=multipart_body(ImageVariationForm, {
                 "image": "A square PNG under 4 MB to make variations of."}))
async def create_image_variation(request: Request, caller: ProjectCaller, images: Images) -> Any:
    files, fields = await _read_form(request, {"image"})
    form = _parse(ImageVariationForm, fields)
    if len(files) > 1:
        raise InvalidRequest("Only one image can be sent for variations.", param="image")
    return await unless_client_leaves(request, images.vary(caller, form, files[0] if files else None,
                                                           base_url=str(request.base_url)))


@router.get("/images/content/{name}", include_in_schema=False)
async def image_content(name: str, images: Images, expires: str | None = None,
                        signature: str | None = None) -> Response:
    """A picture behind a signed link: no API key, the signature is the permission."""
    data, media_type = await images.content(name, expires, signature)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


async def _answer(plan: Any, request: Request, caller: Caller, images: ImageService) -> Any:
    """A planned generation or edit: streamed as events, or whole (stopped if the client leaves)."""
    if plan.stream:
        return sse_typed_response(await images.stream(caller, plan))
    return await unless_client_leaves(request, images.run(caller, plan, base_url=str(request.base_url)))


async def _read_form(request: Request, file_fields: set[str]) -> tuple[list[Upload], dict[str, str]]:
    """Every file part (held in memory, each bounded) and the text fields of a multipart body."""
    form = StreamingForm(request)
    files: list[Upload] = []
    while (part := await form.next_file()) is not None:
        if part.name not in file_fields:
            raise InvalidRequest(f"Unexpected file field '{part.name}'.", param=part.name)
        data = bytearray()
        async for chunk in part.chunks:
            data += chunk
            if len(data) > GPT_MAX_BYTES:
                raise InvalidRequest(f"The file '{part.filename}' is larger than "
                                     f"{GPT_MAX_BYTES // (1024 * 1024)} MB.", param=part.name,
                                     code="image_too_large")
        files.append(Upload(part.name.removesuffix("[]"), part.filename, bytes(data)))
    for name in file_fields:
        if name in form.fields:
            raise InvalidRequest(f"'{name.removesuffix('[]')}' must be sent as a file.",
                                 param=name.removesuffix("[]"))
    return files, form.fields


def _parse(form: type[Form], fields: dict[str, str]) -> Form:
    try:
        return form.model_validate({key: value for key, value in fields.items() if value != ""})
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None
