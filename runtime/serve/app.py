"""`build_app(model, settings)`: the FastAPI app of one loaded model (every route, error, metric, the auth).

Routes (OpenAI shapes; `/v1/*` need `Authorization: Bearer KEY` when an API key is set):
    POST /v1/images/generations   prompt, n, size, response_format=b64_json, output_format (png, jpeg, webp),
                                  output_compression (+ cfg_weight, temperature, top_k, top_p, seed,
                                  negative_prompt) -> {created, data: [{b64_json}], usage}; with stream (and
                                  partial_images, progress_events): server-sent events (image_stream.py)
    POST /v1/chat/completions     messages (text + data: image parts; roles system / developer, user,
                                  assistant), max_tokens / max_completion_tokens, temperature, top_p, top_k,
                                  seed, stop, stream -> completion or server-sent events
    GET  /v1/models               the one model served
    GET  /v1/models/{id}          that model, or a 404
    GET  /health                  200 once the model is loaded and its engine takes work, else 503; its load
    GET  /                        the web playground (playground.py), unless the server runs with --no-ui
    GET  /metrics                 Prometheus text (metrics.py)
    GET  /openapi.json, /docs     the OpenAPI document of these routes (openapi.py) and its browsable page
A route asked with another method is a 405 whose `Allow` header lists the route's methods.

A request is checked completely (Origin and Content-Type: browser.py; body size and read timeout: body.py; JSON,
fields, ranges, images, context) before anything reaches the engine; a refusal is a 4xx with `{"error": {message,
type, param, code}}`. Admission (admission.py) then bounds the queue (429) and refuses work when the engine is down
(503). Work runs on the model's engine (the library's `prepare_images` / `prepare_chat` then `submit_prepared`, no
second request path); a request that outlives the timeout (504) or whose client goes away is cancelled, which frees
its rows; one still running when a shutdown's grace period ends is cut (503 / an SSE error event: shutdown.py).
access.py counts and logs every answer. The app holds no global state: everything lives in the closure of
`build_app`, so several apps (several models) can share a process.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from janus_rt import __version__
from janus_rt.api import Janus
from janus_rt.requests.chat import check_chat_args, check_stop
from janus_rt.requests.image import check_generation_args
from janus_rt.engine import EngineError
from janus_rt.requests.chat import prepare_chat
from janus_rt.requests.image import prepare_images
from janus_rt.spelling import Spelling
from janus_rt.errors import InputError
from janus_rt.jobs import ChatJob, ImageResult
from janus_rt.serve.access import ResponseCounter, route_label
from janus_rt.serve.admission import Admission
from janus_rt.serve.body import read_json
from janus_rt.serve.browser import OriginGuard, cors_options
from janus_rt.serve.errors import APIError, from_input_error, invalid
from janus_rt.serve.messages import build_conversation
from janus_rt.serve.metrics import ServerMetrics
from janus_rt.serve.docs_page import docs_page
from janus_rt.serve.image_options import check_image_options
from janus_rt.serve.image_stream import ImageStream, StreamGuards, StreamShape
from janus_rt.serve.playground import playground_page
from janus_rt.serve.openapi import answers, event_stream, install_openapi, json_body, json_events
from janus_rt.serve.responses import (IMAGE_STREAM_EVENTS, ChatCompletion, ChatIds, Health, ImagesResponse, ModelList,
                                      ModelObject, finish_reason, images_body, model_object, sse)
from janus_rt.serve.schemas import ChatCompletionRequest, ImageGenerationRequest, parse_body
from janus_rt.serve.settings import ServeSettings
from janus_rt.serve.shutdown import InFlight, shutting_down_error
from janus_rt.serve.waiting import ClientGone, await_job, engine_failure, wait_for_disconnect

IMAGES_ROUTE = "/v1/images/generations"
CHAT_ROUTE = "/v1/chat/completions"
MODELS_ROUTE = "/v1/models"
MODEL_ROUTE = "/v1/models/{model_id}"  # metrics label of every /v1/models/<id> (one label, whatever the id)
ROUTES = (IMAGES_ROUTE, CHAT_ROUTE, MODELS_ROUTE, "/health", "/metrics", "/openapi.json", "/docs", "/")
JSON_OFF = {"top_k": "null (off)", "top_p": "null (off)", "seed": "null or left out (a random seed)"}  # in a JSON body
IMAGE_FIELDS = Spelling(renamed={"num_images": "n"}, off_values=JSON_OFF)  # the library's names as the body spells them
STREAM_MEDIA = event_stream({"type": "string"}, description=(  # a chat answer with `stream`: each event
    "`data: <json>`: a chat.completion.chunk (or, on a failure, an error body), then `data: [DONE]`"))
IMAGE_EVENTS = event_stream(json_events(list(IMAGE_STREAM_EVENTS.values())), list(IMAGE_STREAM_EVENTS), description=(
    "`event: <type>` + `data: <json>`: partial images as they are drawn (with partial_images), progress (with "
    "progress_events), one completed event per image; error ends the stream"))  # an image answer with `stream`
PLAYGROUND_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                  "img-src 'self' data: blob:; connect-src 'self'; base-uri 'self'; form-action 'self'; "
                  "frame-ancestors 'self'")  # the page may load and call its own origin only
CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never received by anyone


def build_app(model: Janus, settings: ServeSettings) -> FastAPI:
    """The app serving `model` under `settings` (see module docstring); the caller owns the model's lifetime."""
    metrics = ServerMetrics(model.stats, lambda: model.engine.alive)
    admission = Admission(model, settings.max_queue, settings.retry_after_s)
    loaded_at = int(time.time())
    image_side = model.config.vq.image_size
    image_size = f"{image_side}x{image_side}"
    app = FastAPI(title="janus-rt", version=__version__, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.add_middleware(CORSMiddleware, **cors_options(settings.allow_origins))
    app.add_middleware(OriginGuard, allow_origins=settings.allow_origins)  # outside CORS: refused before any work
    app.add_middleware(ResponseCounter, metrics=metrics,
                       label=lambda path: route_label(path, ROUTES, MODELS_ROUTE, MODEL_ROUTE))
    app.state.metrics = metrics
    in_flight = app.state.in_flight = InFlight()
    app.state.settings = settings
    app.state.model = model

    # ------------------------------------------------------------------------------------------- errors
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        if error.status < 500 or error.status == 503:
            metrics.rejected.labels(error.code).inc()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = (f"no route {request.method} {request.url.path}; routes: POST {IMAGES_ROUTE}, POST {CHAT_ROUTE}, "
                   f"GET {MODELS_ROUTE}, GET {MODELS_ROUTE}/{{id}}, GET /health, GET /metrics, GET /openapi.json"
                   + (", GET / (the playground)" if settings.ui else ""))
        if error.status_code == 405 and error.headers and "Allow" in error.headers:
            message = f"{request.url.path} does not take {request.method}; it takes: {error.headers['Allow']}"
        return await api_error(request, APIError(error.status_code, message, code=code, headers=error.headers))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(request, invalid(f"invalid request: {error.errors()[:1]}", code="invalid_request"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        body = APIError(500, f"internal server error ({type(error).__name__}: {error})", code="internal_error").body()
        return JSONResponse(body, status_code=500)

    # ------------------------------------------------------------------------------------------ helpers
    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key "
                                "the server was started with (--api-key or JANUS_RT_API_KEY)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def check_model_name(name: str | None) -> None:
        if name is not None and name != settings.model_name:
            raise APIError(404, f"model {name!r} is not served here; this server serves {settings.model_name!r} "
                                f"(GET {MODELS_ROUTE})", code="model_not_found", param="model")

    async def finish(job: Any, request: Request, route: str) -> Any:
        """`await_job` (timeout, disconnect), tracked so a shutdown can cut it with a 503 (shutdown.py)."""
        in_flight.add(job, request.state.request_id, route)
        try:
            return await await_job(job, request, settings.request_timeout_s, metrics, lambda: model.engine.alive)
        except APIError:
            if in_flight.was_cut(job):
                raise shutting_down_error() from None
            raise
        finally:
            in_flight.discard(job)

    def served(route: str, started: float, request: Request, tokens: int, engine_requests: list) -> None:
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        request.state.tokens = tokens  # for the access-log line (access.py)
        for engine_request in engine_requests:
            metrics.observe_engine_request(engine_request)

    # ------------------------------------------------------------------------------------------- routes
    @app.get("/health", responses={200: {"model": Health}, 503: {"model": Health, "description": "not taking work"}})
    async def health() -> JSONResponse:
        state = model.engine.health()
        stats = model.stats()
        body = {"status": "ok" if state["alive"] else "unavailable", "model": settings.model_name,
                "backend": model.backend, "engine": state,
                "load": {key: stats[key] for key in ("queued_requests", "active_rows", "max_rows")}}
        return JSONResponse(body, status_code=200 if state["alive"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get(MODELS_ROUTE, responses=answers(ModelList, 401))
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse({"object": "list", "data": [model_object(settings.model_name, loaded_at)]})

    @app.get(MODELS_ROUTE + "/{model_id:path}", responses=answers(ModelObject, 401, 404))
    async def model_by_id(request: Request, model_id: str) -> JSONResponse:
        authorize(request)
        if model_id != settings.model_name:
            raise APIError(404, f"model {model_id!r} is not served here; this server serves {settings.model_name!r} "
                                f"(GET {MODELS_ROUTE})", code="model_not_found", param="model")
        return JSONResponse(model_object(settings.model_name, loaded_at))

    @app.post(IMAGES_ROUTE, openapi_extra=json_body(ImageGenerationRequest),
              responses=answers(ImagesResponse, 400, 401, 404, 408, 413, 415, 429, 500, 503, 504,
                                ok_media=IMAGE_EVENTS))
    async def images(request: Request) -> Response:
        started = time.perf_counter()
        authorize(request)
        raw = await read_json(request, settings.max_body_bytes, settings.read_timeout_s)
        body = parse_body(ImageGenerationRequest, raw)
        check_model_name(body.model)
        options = check_image_options(body, image_size, settings.max_images_per_request)
        try:
            params = check_generation_args(body.n, body.cfg_weight, body.temperature, body.top_k, body.top_p,
                                           body.seed, spelling=IMAGE_FIELDS)
            prepared = await run_in_threadpool(prepare_images, body.prompt, body.n, params, model.request_context,
                                               False, IMAGE_FIELDS, negative_prompt=body.negative_prompt,
                                               partial_images=options.partial_images)
        except InputError as e:
            raise from_input_error(e, spelling=IMAGE_FIELDS) from None
        job = await run_in_threadpool(admission.submit, lambda: model.submit_prepared(prepared))
        prompt_tokens = sum(len(ids) for ids in prepared.prompt_ids)

        def served_images(result: ImageResult) -> None:
            metrics.images.inc(len(result.images))
            served(IMAGES_ROUTE, started, request, result.tokens.numel(), job.requests)

        if options.stream:
            shape = StreamShape(image_size, options.output_format, options.compression, body.n > 1,
                                model.config.vq.image_token_grid, options.progress_events, prompt_tokens, IMAGES_ROUTE)
            guards = StreamGuards(in_flight, metrics, settings.request_timeout_s, lambda: model.engine.alive,
                                  served_images)
            return StreamingResponse(ImageStream(job, request, shape, guards).events(),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            result = await finish(job, request, IMAGES_ROUTE)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        payload = await run_in_threadpool(images_body, result.images, prompt_tokens, result.tokens.numel(),
                                          options.output_format, options.compression)
        served_images(result)
        return JSONResponse(payload)

    @app.post(CHAT_ROUTE, openapi_extra=json_body(ChatCompletionRequest),
              responses=answers(ChatCompletion, 400, 401, 404, 408, 413, 415, 429, 500, 503, 504,
                                ok_media=STREAM_MEDIA))
    async def chat(request: Request) -> Response:
        started = time.perf_counter()
        authorize(request)
        raw = await read_json(request, settings.max_body_bytes, settings.read_timeout_s)
        body = parse_body(ChatCompletionRequest, raw)
        check_model_name(body.model)
        if body.n != 1:
            raise invalid(f"n must be 1 (one answer per request), got {body.n}; send several requests", "n")
        length_field, asked = ("max_completion_tokens", body.max_completion_tokens)
        if asked is None:
            length_field, asked = "max_tokens", body.max_tokens
        elif body.max_tokens is not None and body.max_tokens != asked:
            raise invalid(f"max_tokens ({body.max_tokens}) and max_completion_tokens ({asked}) disagree; give one",
                          "max_tokens")
        fields = Spelling(off_values=JSON_OFF, renamed={"max_new_tokens": length_field, "prompt": "messages",
                                                        "image": "messages", "question": "messages"})
        try:
            params = check_chat_args(settings.default_max_tokens if asked is None else asked, body.temperature,
                                     body.top_k, body.top_p, body.seed, spelling=fields)
            stop = check_stop(body.stop, fields)
        except InputError as e:
            raise from_input_error(e, spelling=fields) from None
        conversation = await run_in_threadpool(build_conversation, body.messages, settings.max_image_pixels)
        try:  # a server's default length is a cap, lowered to what the conversation leaves
            prepared = await run_in_threadpool(prepare_chat, conversation, params, model.request_context,
                                               asked is None, fields, stop)
        except InputError as e:
            raise from_input_error(e, code="invalid_messages", spelling=fields) from None
        prompt_tokens = len(prepared.ids)
        job: ChatJob = await run_in_threadpool(admission.submit, lambda: model.submit_prepared(prepared))
        ids = ChatIds(settings.model_name)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(stream_chat(job, ids, request, prompt_tokens, include_usage, started),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            result = await finish(job, request, CHAT_ROUTE)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        metrics.prompt_tokens.inc(prompt_tokens)
        metrics.completion_tokens.inc(len(result.token_ids))
        served(CHAT_ROUTE, started, request, len(result.token_ids), [job.request])
        return JSONResponse(ids.completion(result, prompt_tokens))

    async def cancel_on_disconnect(request: Request, job: ChatJob) -> None:
        await wait_for_disconnect(request)
        if not job.done():
            job.cancel()
            metrics.cancelled.labels("client_disconnected").inc()

    async def stream_chat(job: ChatJob, ids: ChatIds, request: Request, prompt_tokens: int, include_usage: bool,
                          started: float) -> AsyncIterator[bytes]:
        """Server-sent events: a role chunk, one chunk per text piece, the finish chunk, [usage], [DONE]."""
        loop = asyncio.get_running_loop()
        timeout = settings.request_timeout_s
        deadline = None if timeout is None else loop.time() + timeout
        watcher = asyncio.ensure_future(cancel_on_disconnect(request, job))
        in_flight.add(job, request.state.request_id, CHAT_ROUTE)
        pieces = job.astream().__aiter__()
        try:
            yield sse(ids.chunk({"role": "assistant", "content": ""}))
            while True:
                remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
                try:
                    piece = await asyncio.wait_for(pieces.__anext__(), remaining)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    job.cancel()
                    metrics.cancelled.labels("timeout").inc()
                    error = APIError(504, f"the answer did not finish within the server's request timeout "
                                          f"({timeout:g} s) and was cancelled", code="timeout")
                    yield sse(error.body())
                    yield sse("[DONE]")
                    return
                yield sse(ids.chunk({"content": piece}))
            try:
                result = await job
            except asyncio.CancelledError:
                if in_flight.was_cut(job):  # the shutdown's grace period ended: say so, then end the stream
                    yield sse(shutting_down_error().body())
                    yield sse("[DONE]")
                    return
                if job.request.cancel_requested:  # cancelled on our side (the client left): nothing to send
                    return
                raise
            except EngineError as e:
                yield sse(engine_failure(e, model.engine.alive).body())
                yield sse("[DONE]")
                return
            yield sse(ids.chunk({}, finish_reason(result)))
            if include_usage:
                yield sse(ids.usage_chunk(prompt_tokens, len(result.token_ids)))
            yield sse("[DONE]")
            metrics.prompt_tokens.inc(prompt_tokens)
            metrics.completion_tokens.inc(len(result.token_ids))
            served(CHAT_ROUTE, started, request, len(result.token_ids), [job.request])
        finally:
            in_flight.discard(job)
            watcher.cancel()
            if not job.done():
                job.cancel()

    install_openapi(app, [ImageGenerationRequest, ChatCompletionRequest, *IMAGE_STREAM_EVENTS.values()])

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:  # our own page: FastAPI's loads Swagger UI from a CDN (nothing offline)
        return HTMLResponse(docs_page(app.openapi()))

    if settings.ui:
        page = playground_page()

        @app.get("/", include_in_schema=False)
        async def playground() -> HTMLResponse:
            return HTMLResponse(page, headers={"Content-Security-Policy": PLAYGROUND_CSP})
    return app
