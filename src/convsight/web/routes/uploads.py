"""Uploads: ``POST /api/upload`` (the page's script; JSON) and ``POST /images`` (the form itself,
for browsers without script; a 303 to the image's view). ``guard`` has already checked that the
post comes from the explorer's own page.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..workbench import BadUpload
from .respond import input_images


async def upload_form(request: Request) -> Response:
    """Keep the posted picture (form field ``image``) and show it: 303 to its image view."""
    image_id = await receive_upload(request)
    return RedirectResponse(f"/image/{image_id}", status_code=303)


async def upload_json(request: Request) -> JSONResponse:
    """Keep the posted picture; answer its id and the URL of its view (201)."""
    image_id = await receive_upload(request)
    return JSONResponse({"id": image_id, "url": f"/image/{image_id}"}, status_code=201)


async def receive_upload(request: Request) -> str:
    """Read the posted form and keep its picture; return the image id."""
    limit = input_images(request).max_upload_bytes
    length = request.headers.get("content-length")
    if length is None:  # a streamed body could grow past any limit before we see it
        raise BadUpload("uploads need a Content-Length header", status=411)
    if not re.fullmatch(r"[0-9]{1,12}", length):
        raise BadUpload(f"bad Content-Length {length[:40]!r}", status=400)
    if int(length) > limit + 64 * 1024:
        if int(length) <= 8 * limit:  # read it away so the client gets our answer
            async for _ in request.stream():
                pass
        raise BadUpload(f"the upload has {int(length):,} bytes; the limit is {limit:,}",
                        status=413)
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=limit)
    except HTTPException as exc:
        raise BadUpload(f"cannot read the upload: {exc.detail}", status=exc.status_code)
    try:
        field = form.get("image")
        if field is None or isinstance(field, str):
            raise BadUpload("send the picture as a file in the form field 'image'", status=400)
        # the file (spooled to disk past 1 MiB) is read inside a decoding slot, not here
        return await run_in_threadpool(input_images(request).add_upload, field.file)
    finally:
        await form.close()


ROUTES = [
    Route("/images", upload_form, methods=["POST"]),
    Route("/api/upload", upload_json, methods=["POST"]),
]
