"""``florence serve``: the pipeline behind HTTP with dynamic batching, on LitServe.

LitServe (FastAPI + uvicorn) brings what a model server needs and florence should not own: model
workers in their own processes (``--workers``), dynamic batching (a worker takes up to
``max_batch`` queued items, waiting at most ``max_wait_ms`` for more), a request-size limit, queue
timeouts, graceful shutdown of its processes and the OpenAPI page (``/docs``). florence adds the
HTTP front (this module): every request is read and checked in the HTTP process (API key, size,
image header and pixel count, task, text input, generation options) and refused with a 4xx
before anything is queued, so a bad request never reaches a batch; each image then becomes one
item in LitServe's queue, and the worker runs the items it gathered as one padded mixed-task
batch of :class:`florence.inference.Pipeline` (items with the same generation options together),
which gives every item the result of a call for it alone.

    florence serve MODEL [--backend torch|onnxruntime] [--port 8000] [--max-batch 8] [--max-wait-ms 10]

Endpoints: ``POST /v1/predict``, ``POST /v1/predict/batch``, ``GET /v1/tasks``, ``GET /health``
(the process is up), ``GET /ready`` (a model worker has loaded the model), ``GET /metrics``
(Prometheus), ``GET /`` (a page to try the model), ``GET /docs``.
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import litserve as ls

from .checks import Limits
from .front import Front, Observe, add_routes
from .worker import ITEMS_PATH, FlorenceAPI

__all__ = ["API_KEY_ENV", "Limits", "build_server", "serve"]

API_KEY_ENV = "FLORENCE_API_KEY"


def build_server(model: str, backend: str = "torch", dtype: str = "auto", workers: int = 1, max_batch: int = 8,
                 max_wait_ms: float = 10, limits: Limits | None = None, api_key: str | None = None,
                 block_location_ngrams: bool = False, accelerator: str = "auto") -> ls.LitServer:
    """The LitServer with florence's routes (not started: ``serve`` runs it)."""
    import multiprocessing as mp

    from ...models.files import resolve_folder

    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    if max_batch < 1 or workers < 1 or max_wait_ms < 0:
        raise ValueError(f"max_batch and workers must be >= 1 and max_wait_ms >= 0, got {max_batch}, {workers}, "
                         f"{max_wait_ms}")
    limits = limits or Limits()
    folder = str(resolve_folder(model))  # a missing folder or hub id fails here, before any process starts
    cancelled = mp.Manager().dict()
    api = FlorenceAPI(folder, backend, dtype, workers, max_batch, max_wait_ms, block_location_ngrams, cancelled)
    server = ls.LitServer(api, accelerator=accelerator, workers_per_device=workers, timeout=limits.timeout,
                          healthcheck_path="/ready", max_payload_size=limits.max_request_bytes)
    routes = server.app.router.routes  # LitServe's own POST route to the queue and its "/" give way to ours
    server.app.router.routes = [r for r in routes if getattr(r, "path", None) not in (ITEMS_PATH, "/")]
    front = Front(server, limits, Path(model).name or str(model), api_key, cancelled)
    add_routes(server.app, front)
    server.app.add_middleware(Observe, front=front)
    server.uvicorn_graceful_timeout = limits.timeout  # shutdown waits for the requests in flight this long
    server.app.title, server.app.description = "florence", f"Florence-2 ({model}) behind HTTP: see /"
    return server


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options):
    """Run ``florence serve`` until SIGINT or SIGTERM; both finish the requests in flight first.
    ``options`` go to :func:`build_server`; the API key also comes from ``$FLORENCE_API_KEY``."""
    options["api_key"] = options.get("api_key") or os.environ.get(API_KEY_ENV) or None
    server = build_server(model, **options)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(message)s")

    # SIGTERM as SIGINT: LitServe's shutdown, in which uvicorn answers the requests in flight before the
    # model workers stop
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server.run(host=host, port=port, num_api_servers=1, log_level=log_level, generate_client_file=False)
