"""The HTTP process: API key, reading and checking requests, admission (503 when full), one queue item
per image into LitServe's queue and back, answers, metrics and one log line per request."""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import asdict
from pathlib import Path

import litserve as ls
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from litserve.utils import LitAPIStatus, ResponseBufferItem
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from .checks import (
    GENERATION_OPTIONS,
    BatchRequest,
    Limits,
    PredictRequest,
    decode_base64,
    fail,
    filter_scores,
    read_item,
)
from .worker import ITEMS_PATH

log = logging.getLogger("florence.serve")
PAGE = Path(__file__).with_name("page.html")
PATHS = {"/v1/predict", "/v1/predict/batch", "/v1/tasks", "/health", "/ready", "/metrics", "/"}  # metric labels


class Front:
    """The HTTP process's state: the in-flight count (admission), metrics, and the way into
    LitServe's queue."""

    def __init__(self, server: ls.LitServer, limits: Limits, model_name: str, api_key: str | None, cancelled):
        self.server, self.limits, self.model_name, self.api_key = server, limits, model_name, api_key
        self.cancelled = cancelled
        self.inflight = 0
        self.registry = CollectorRegistry()
        self.requests = Counter("florence_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("florence_request_latency_seconds", "time from request to answer", ["path"],
                                 buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120),
                                 registry=self.registry)
        self.images = Counter("florence_images", "images answered by task", ["task"], registry=self.registry)
        self.batch_size = Histogram("florence_batch_size", "images per model batch", registry=self.registry,
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
        self.queue_depth = Gauge("florence_queue_depth", "images waiting or running", registry=self.registry)

    def check_key(self, request: Request):
        if not self.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if not secrets.compare_digest(given.encode(), self.api_key.encode()):
            raise fail(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                        **{"WWW-Authenticate": "Bearer"})

    async def body(self, request: Request) -> bytes:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > self.limits.max_request_bytes:
            raise fail(413, f"request of {size} bytes, over the server's limit of {self.limits.max_request_bytes}")
        return await request.body()

    async def read(self, request: Request, batch: bool) -> list[tuple]:
        """The request's images as ``(fields, image bytes or None (base64 in fields), name)``, unchecked."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            await self.body(request)  # size check before parsing
            form = await request.form(max_files=self.limits.max_batch_items, max_fields=64)
            files = form.getlist("image")
            fields = {k: v for k, v in form.multi_items() if k != "image"}
            unknown = set(fields) - {"task", "text", "score_threshold", "nms", "classes", "grammar", "tile",
                                     "tile_overlap", *GENERATION_OPTIONS}
            if unknown:
                raise fail(400, f"unknown field(s) {sorted(unknown)}: expected image, task, text, num_beams, "
                                 "max_new_tokens, score_threshold, nms, classes, grammar, tile, tile_overlap")
            if not files or any(isinstance(f, str) for f in files):
                raise fail(400, "no image file: send it as the multipart field 'image' (curl -F image=@photo.jpg)")
            if not batch and len(files) > 1:
                raise fail(400, f"{len(files)} images: /v1/predict takes one (use /v1/predict/batch)")
            self.check_count(len(files))
            return [(fields, await f.read(), f"image {k} ({f.filename})" if batch else f"image ({f.filename})")
                    for k, f in enumerate(files)]
        try:
            payload = json.loads(await self.body(request))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise fail(400, f"the body is neither JSON nor multipart/form-data ({e})") from None
        try:
            requests = BatchRequest.model_validate(payload).items if batch else [
                PredictRequest.model_validate(payload)]
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                                 for err in e.errors()[:5])
            raise fail(400, f"bad request body: {problems}") from None
        self.check_count(len(requests))
        return [(r.model_dump(), None, f"items[{k}]" if batch else "image") for k, r in enumerate(requests)]

    def check_count(self, n: int):
        if n == 0:
            raise fail(400, "no images in the request")
        if n > self.limits.max_batch_items:
            raise fail(413, f"{n} images in one request, over the server's limit of {self.limits.max_batch_items}")

    def item_or_error(self, fields: dict, data: bytes | None, what: str) -> dict:
        try:
            if data is None:
                data = decode_base64(fields.get("image") or "", what)
            return read_item(fields, data, self.limits, what)
        except HTTPException as e:
            return {"error": e.detail, "status": e.status_code}

    async def run(self, request: Request, raw: list[tuple]) -> list[dict]:
        """Admit the request's images (503 when full), check and decode them (in a thread, not on the event
        loop), queue them and wait for their answers, the timeout or the client leaving."""
        n = len(raw)
        if self.inflight + n > self.limits.max_queue:
            raise fail(503, f"the server is full ({self.inflight} images queued or running, limit "
                            f"{self.limits.max_queue}): retry later", **{"Retry-After": "1"})
        self.inflight += n
        self.queue_depth.set(self.inflight)
        deadline = time.time() + self.limits.timeout
        gone = asyncio.ensure_future(_disconnected(request))
        tasks = []
        try:
            items = await asyncio.to_thread(lambda: [self.item_or_error(*r) for r in raw])
            live = [it for it in items if "error" not in it]
            tasks = [asyncio.ensure_future(self.submit(request, it, deadline)) for it in live]
            if tasks:
                work = asyncio.gather(*tasks)
                done, _ = await asyncio.wait({work, gone}, timeout=max(0.0, deadline - time.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if work not in done:
                    self.forget([it["id"] for it, t in zip(live, tasks) if not t.done()])
                    if gone in done:
                        raise fail(499, "the client closed the connection")
                    raise fail(504, f"no answer within the server's timeout of {self.limits.timeout:g} s")
            answers = dict(zip((it["id"] for it in live), (t.result() for t in tasks)))
        finally:
            gone.cancel()
            for t in tasks:
                t.cancel()
            self.inflight -= n
            self.queue_depth.set(self.inflight)
        out = []
        for it in items:
            if "error" in it:
                out.append(it)
                continue
            a = answers[it["id"]]
            if a.get("first"):
                self.batch_size.observe(a["batch_size"])
            self.images.labels(it["task"]).inc()
            timing = {"inference_ms": round(a["inference_ms"], 1), "batch_size": a["batch_size"], "worker": a["worker"]}
            if "error" in a:
                out.append({"error": a["error"], "status": a["status"], "task": it["task"], "timing": timing})
            else:
                out.append({"task": it["task"], "width": it["image"].width, "height": it["image"].height,
                            "result": filter_scores(a["result"], it["task"], it["selection"]["score_threshold"],
                                                          it["selection"]["nms"]), "timing": timing})
        return out

    def forget(self, ids: list[str]):
        """Tell the workers to skip these items; marks older than twice the timeout (of items answered or
        expired before a worker saw the mark) are dropped now and then."""
        now = time.time()
        for i in ids:
            self.cancelled[i] = now
        if len(self.cancelled) > 1000:
            for k, t in list(self.cancelled.items()):
                if now - t > 2 * self.limits.timeout:
                    self.cancelled.pop(k, None)

    async def submit(self, request: Request, item: dict, deadline: float) -> dict:
        """One item through LitServe's queue (as its own POST route does) and back."""
        queue = self.server._get_request_queue(ITEMS_PATH)
        uid = item["id"]
        payload = {k: item[k] for k in ("id", "image", "task", "text", "generation")} | {"deadline": deadline}
        event = asyncio.Event()
        self.server.response_buffer[uid] = ResponseBufferItem(event=event)
        try:
            await asyncio.to_thread(queue.put, (request.app.response_queue_id, uid, time.monotonic(), payload))
            await event.wait()
            response, status = self.server.response_buffer[uid].response
        finally:
            self.server.response_buffer.pop(uid, None)
        if status == LitAPIStatus.ERROR:  # LitServe's own errors (its queue timeout: 504)
            code = getattr(response, "status_code", 500)
            return {"error": str(getattr(response, "detail", "internal error")), "status": code,
                    "batch_size": 0, "inference_ms": 0.0, "worker": None}
        return response


async def _disconnected(request: Request):
    """Returns when the client closes the connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _answer(started: float, model: str, **content) -> JSONResponse:
    return JSONResponse({"model": model, **content, "total_ms": round((time.perf_counter() - started) * 1000, 1)})


def add_routes(app, front: Front):
    from ...task import list_tasks

    page_html = PAGE.read_text(encoding="utf-8")  # read once, not per request

    auth = [Depends(front.check_key)]
    multipart = {"multipart/form-data": {"schema": {"type": "object", "required": ["image", "task"], "properties": {
        "image": {"type": "string", "format": "binary"}, "task": {"type": "string", "example": "<OD>"},
        "text": {"type": "string"}, "num_beams": {"type": "integer"}, "max_new_tokens": {"type": "integer"},
        "score_threshold": {"type": "number"}, "nms": {"type": "number"},
        "classes": {"type": "string", "description": "comma-separated"},
        "grammar": {"type": "boolean"}, "tile": {"type": "integer"}, "tile_overlap": {"type": "number"}}}}}

    def body(model):
        return {"requestBody": {"required": True, "content": {
            "application/json": {"schema": model.model_json_schema()}, **multipart}}}

    @app.post("/v1/predict", dependencies=auth, openapi_extra=body(PredictRequest), tags=["predict"])
    async def predict(request: Request):
        """One image and one task: the pipeline's result (with scores), the model and the timing."""
        started = time.perf_counter()
        (answer,) = await front.run(request, await front.read(request, batch=False))
        request.state.log = {"task": answer.get("task"), "images": 1,
                             "batch_size": answer.get("timing", {}).get("batch_size")}
        if "error" in answer:
            raise fail(answer["status"], answer["error"])
        return _answer(started, front.model_name, **answer)

    @app.post("/v1/predict/batch", dependencies=auth, openapi_extra=body(BatchRequest), tags=["predict"])
    async def predict_batch(request: Request):
        """Several images (JSON ``{"items": [...]}``, or multipart with several ``image`` files sharing
        the other fields): one answer per image, in order; an image that cannot be read or checked
        gets ``{"error", "status"}`` and the others are answered."""
        started = time.perf_counter()
        results = await front.run(request, await front.read(request, batch=True))
        request.state.log = {"task": sorted({r["task"] for r in results if "task" in r}), "images": len(results),
                             "errors": sum("error" in r for r in results)}
        return _answer(started, front.model_name, results=results)

    @app.get("/v1/tasks", dependencies=auth, tags=["info"])
    async def tasks():
        """The registered tasks: token, name, and the input each takes (null, "text" or "region")."""
        return {"tasks": [{"token": t.token, "name": t.name, "input": t.input_kind} for t in list_tasks()],
                "limits": asdict(front.limits)}

    @app.get("/health", tags=["info"])
    async def health():
        """Liveness: the HTTP process answers (/ready says whether a model is loaded)."""
        return {"status": "ok"}

    @app.get("/metrics", dependencies=auth, tags=["info"])
    async def metrics():
        return Response(generate_latest(front.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(page_html)

    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def validation_error(request, exc: RequestValidationError):
        return JSONResponse({"error": f"bad request: {exc.errors()[:3]}"}, status_code=400)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


class Observe:
    """ASGI middleware: request count and latency metrics, and one JSON log line per request
    (method, path, status, time, client, task, images; never headers, so never the API key)."""

    def __init__(self, app, front: Front):
        self.app, self.front = app, front

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope["path"] if scope["path"] in PATHS else "other"
            seconds = time.perf_counter() - started
            self.front.requests.labels(path, str(status[0])).inc()
            self.front.latency.labels(path).observe(seconds)
            extra = scope.get("state", {}).get("log", {})
            log.info(json.dumps({"method": scope["method"], "path": scope["path"], "status": status[0],
                                 "ms": round(seconds * 1000, 1), "client": (scope.get("client") or ["?"])[0],
                                 **extra}))
