"""JSON answers and bounded request bodies, shared by every route of the controller's server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import Response

MAX_BODY = 1024 * 1024  # Alertmanager batches and API requests are small; refuse anything absurd
BODY_SECONDS = 10  # for a whole request body


def json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response((json.dumps(body, indent=1) + "\n").encode(), status, headers=headers, media_type="application/json")


async def read_body(request: Request) -> bytes | Response:
    """The request body, at most MAX_BODY bytes, all there within BODY_SECONDS; else the refusal."""
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > MAX_BODY:  # h11 let only digits through
        return json_response(413, {"error": "payload too large"})

    async def read() -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(read(), BODY_SECONDS)
    except asyncio.TimeoutError:
        return json_response(408, {"error": f"request body not received within {BODY_SECONDS}s"})
    return json_response(413, {"error": "payload too large"}) if body is None else body
