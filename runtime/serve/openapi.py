"""The server's OpenAPI document (`/openapi.json`, browsable at `/docs`): request bodies from the request models
(schemas.py), answers from the response models (responses.py).

The routes read their bodies themselves (app.py's `read_json` + `parse_body`: our own 400s naming the field, the
body size limit, JSON parsed off the event loop), so FastAPI never sees the request models. `json_body(Model)`
declares one as a route's documented body (`openapi_extra`), and `install_openapi` puts the models' JSON schemas
into the document's components. Nothing here changes how a request is parsed or refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from janus_rt.serve.responses import ErrorBody

DESCRIPTION = ("janus-rt's OpenAI-compatible server for one Janus model: text-to-image, and chat about images. "
               "Every refusal is a 4xx with the body `{\"error\": {message, type, param, code}}`; `/v1/*` need "
               "`Authorization: Bearer KEY` when the server was started with an API key.")
SCHEMA_REF = "#/components/schemas/{model}"
ERROR_REASONS = {400: "a bad request (the field is named in `param`)", 401: "a missing or wrong API key",
                 404: "no such model or route", 413: "the body is over the server's limit",
                 408: "the body did not arrive within the server's read timeout",
                 415: "the body is not sent as `Content-Type: application/json`",
                 429: "the queue is full (see Retry-After)", 500: "the engine failed on this request",
                 503: "the engine is not taking work", 504: "the request outlived the server's timeout"}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route whose JSON body is `model` (read by the route itself, not by FastAPI)."""
    schema = {"$ref": SCHEMA_REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def event_stream(data: dict[str, Any], events: list[str] | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """`ok_media` of a route whose 200 may be server-sent events: `schema` describes ONE event, as OpenAPI 3.1
    tools read a `text/event-stream` schema (schemathesis validates each event against it): its `data` field (a
    string; `data` says what it holds) and, when given, its `event` names."""
    properties: dict[str, Any] = {"data": data}
    if events:
        properties["event"] = {"enum": events}
    schema: dict[str, Any] = {"type": "object", "required": ["data"], "properties": properties}
    if description:
        schema["description"] = description
    return {"text/event-stream": {"schema": schema}}


def json_events(models: list[type[BaseModel]]) -> dict[str, Any]:
    """The `data` of an event that is one of `models` as JSON (their schemas are among the document's components:
    pass them to `install_openapi`)."""
    return {"type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [{"$ref": SCHEMA_REF.format(model=m.__name__)} for m in models]}}


def answers(ok: type[BaseModel] | None, *errors: int, ok_media: dict[str, Any] | None = None) -> dict[int, Any]:
    """`responses=` of a route: 200 with `ok` (plus other media types of a 200), and each error status with the
    error body."""
    documented: dict[int, Any] = {status: {"model": ErrorBody, "description": ERROR_REASONS[status]}
                                  for status in errors}
    if ok is not None:
        documented[200] = {"model": ok, "description": "OK"}
        if ok_media:
            documented[200]["content"] = ok_media
    return documented


def install_openapi(app: FastAPI, bodies: list[type[BaseModel]]) -> None:
    """Serve a document whose components hold the schemas of `bodies` (the routes' `json_body`s), built once.
    FastAPI's own 422 answers are left out: the app answers a request it cannot read with a 400 (app.py)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            _, definitions = models_json_schema([(model, "validation") for model in bodies], ref_template=SCHEMA_REF)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):  # only the 422s referred to them
                schemas.pop(unused, None)
            for name, schema in definitions.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
