"""``florence serve`` as its users meet it: the command started as a process on 127.0.0.1 at a free
port, spoken to over HTTP by concurrent clients. The model is the tiny preset at 64 px, trained for
a few seconds on four synthetic scenes so that ``<OD>`` answers real boxes with varied scores.
Every answer is compared with ``florence.pipeline`` on the same request alone."""
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("litserve", reason="the serve extra is not installed (bash tools/install.sh --serve)")
requests = pytest.importorskip("requests")

import florence  # noqa: E402
from helpers import same_result as _same, train_tiny  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
GEN = {"num_beams": 1, "max_new_tokens": 30}


def _train_od_model(folder: Path):
    """The tiny preset overfitted on <OD> of four 64 px scenes (~120 steps): boxes with scores."""
    return [s["image"] for s in train_tiny(folder, ("<OD>",), scenes=4)]


@pytest.fixture(scope="module")
def od_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve") / "od"
    scenes = _train_od_model(folder)
    return folder, scenes


@pytest.fixture(scope="module")
def pipe(od_model):
    return florence.pipeline(od_model[0], dtype="float32")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``florence serve MODEL ...`` in a process of its own, its log in a file."""

    def __init__(self, model, *options, env=None, log=None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "florence.cli", "serve", str(model), "--port", str(self.port), *options],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, f"florence serve exited:\n{self.log.read_text()[-3000:]}"
            try:
                if requests.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"florence serve not ready in 180 s:\n{self.log.read_text()[-3000:]}")

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=kw.pop("timeout", 120), **kw)

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def metric(self, name, **kw) -> float:
        for line in self.get("/metrics", **kw).text.splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def server(od_model, tmp_path_factory):
    """Batching on (up to 8 images, 300 ms to gather them), float32, small limits to test."""
    s = Server(od_model[0], "--dtype", "float32", "--max-batch", "8", "--max-wait-ms", "300", "--max-queue", "12",
               "--max-request-mb", "1", "--max-pixels", "1000000", "--max-batch-items", "12", "--max-num-beams", "3",
               "--max-new-tokens", "64", log=tmp_path_factory.mktemp("log") / "server.log")
    yield s
    s.stop()


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _b64(image) -> str:
    return base64.b64encode(_png(image)).decode()


def _requests(scenes):
    """Mixed tasks and sizes: (image, task, text, generation options)."""
    wide = scenes[1].resize((96, 48))
    return [(scenes[0], "<OD>", None, GEN), (scenes[1], "<CAPTION>", None, GEN),
            (wide, "<OD>", None, {"num_beams": 3, "max_new_tokens": 30}),
            (scenes[2], "<CAPTION_TO_PHRASE_GROUNDING>", "a red triangle", GEN),
            (scenes[3], "<REGION_TO_CATEGORY>", [5.0, 5.0, 40.0, 30.0], GEN),
            (scenes[2], "<OCR_WITH_REGION>", None, GEN), (scenes[3], "<OD>", None, GEN),
            (wide, "<REFERRING_EXPRESSION_SEGMENTATION>", "the red triangle", GEN)]


def _json_request(image, task, text, gen):
    return {"image": _b64(image), "task": task, **({"text": text} if text is not None else {}), **gen}


def test_concurrent_mixed_requests_are_batched_and_equal_the_pipeline_alone(server, od_model, pipe):
    reqs = _requests(od_model[1])
    with ThreadPoolExecutor(len(reqs)) as pool:
        answers = list(pool.map(lambda r: server.post("/v1/predict", json=_json_request(*r)), reqs))
    for (image, task, text, gen), r in zip(reqs, answers):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "od" and body["task"] == task and (body["width"], body["height"]) == image.size
        _same(body["result"], pipe(image, task, text, **gen)[task])
    sizes = [r.json()["timing"]["batch_size"] for r in answers]
    assert max(sizes) > 1, f"no two requests shared a batch: {sizes}"
    od = pipe(od_model[1][0], "<OD>", **GEN)["<OD>"]
    assert od["bboxes"] and len(od["scores"]) == len(od["bboxes"])  # the model answers real boxes


def test_multipart_upload_score_threshold_and_batch_endpoint(server, od_model, pipe):
    scene = od_model[1][2]
    full = pipe(scene, "<OD>", **GEN)["<OD>"]
    threshold = sorted(full["scores"])[len(full["scores"]) // 2]
    r = server.post("/v1/predict", files={"image": ("scene.png", _png(scene), "image/png")},
                    data={"task": "od", "score_threshold": str(threshold), **{k: str(v) for k, v in GEN.items()}})
    assert r.status_code == 200, r.text
    keep = [k for k, s in enumerate(full["scores"]) if s >= threshold]
    assert 0 < len(keep) <= len(full["scores"])
    _same(r.json()["result"], {key: [v[k] for k in keep] for key, v in full.items()})
    # class-aware NMS as well, as the pipeline's nms= (florence.regions.select)
    from florence.regions import select

    r = server.post("/v1/predict", json=_json_request(scene, "<OD>", None, {**GEN, "nms": 0.3,
                                                                            "score_threshold": threshold}))
    assert r.status_code == 200, r.text
    _same(r.json()["result"], select(full, "<OD>", score_threshold=threshold, nms=0.3))
    # a closed label set (JSON list, or comma-separated in multipart): the pipeline's constrained result
    classes = [full["labels"][0], "purple star"]
    r = server.post("/v1/predict", json=_json_request(scene, "<OD>", None, {**GEN, "classes": classes}))
    assert r.status_code == 200, r.text
    _same(r.json()["result"], pipe(scene, "<OD>", classes=classes, **GEN)["<OD>"])
    assert set(r.json()["result"]["labels"]) <= set(classes)
    r = server.post("/v1/predict", files={"image": ("scene.png", _png(scene), "image/png")},
                    data={"task": "od", "classes": ",".join(classes), **{k: str(v) for k, v in GEN.items()}})
    assert r.status_code == 200, r.text
    _same(r.json()["result"], pipe(scene, "<OD>", classes=classes, **GEN)["<OD>"])
    # the task's grammar (JSON true, or "true" in multipart): the pipeline's grammar=True result
    r = server.post("/v1/predict", json=_json_request(scene, "<OD>", None, {**GEN, "grammar": True}))
    assert r.status_code == 200, r.text
    _same(r.json()["result"], pipe(scene, "<OD>", grammar=True, **GEN)["<OD>"])
    r = server.post("/v1/predict", files={"image": ("scene.png", _png(scene), "image/png")},
                    data={"task": "od", "grammar": "true", **{k: str(v) for k, v in GEN.items()}})
    assert r.status_code == 200, r.text
    _same(r.json()["result"], pipe(scene, "<OD>", grammar=True, **GEN)["<OD>"])
    # a tiled read (JSON, or text fields in multipart): the pipeline's tiled result
    page = Image.new("RGB", (128, 64))
    page.paste(scene, (0, 0)), page.paste(od_model[1][1], (64, 0))
    tiled = pipe(page, "<OD>", tile=dict(size=64, overlap=0.25), batch_size=16, **GEN)["<OD>"]
    r = server.post("/v1/predict", json=_json_request(page, "<OD>", None, {**GEN, "tile": 64, "tile_overlap": 0.25}))
    assert r.status_code == 200, r.text
    _same(r.json()["result"], tiled)
    r = server.post("/v1/predict", files={"image": ("page.png", _png(page), "image/png")},
                    data={"task": "od", "tile": "64", "tile_overlap": "0.25", **{k: str(v) for k, v in GEN.items()}})
    assert r.status_code == 200, r.text
    _same(r.json()["result"], tiled)
    # several classes of one image: the pipeline's merged result
    ovd = "<OPEN_VOCABULARY_DETECTION>"
    r = server.post("/v1/predict", json=_json_request(scene, ovd, ["a red square", "circle"], GEN))
    assert r.status_code == 200, r.text
    _same(r.json()["result"], pipe(scene, ovd, ["a red square", "circle"], **GEN)[ovd])

    items = [_json_request(*req) for req in _requests(od_model[1])[:3]]
    items.insert(1, {"image": base64.b64encode(b"not an image").decode(), "task": "<OD>"})
    r = server.post("/v1/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4 and results[1]["status"] == 400 and "items[1]" in results[1]["error"]
    for (image, task, text, gen), got in zip(_requests(od_model[1])[:3], results[:1] + results[2:]):
        _same(got["result"], pipe(image, task, text, **gen)[task])

    r = server.post("/v1/predict/batch", files=[("image", ("a.png", _png(s), "image/png")) for s in od_model[1]],
                    data={"task": "<OD>", **{k: str(v) for k, v in GEN.items()}})
    assert r.status_code == 200, r.text
    for scene, got in zip(od_model[1], r.json()["results"]):
        _same(got["result"], pipe(scene, "<OD>", **GEN)["<OD>"])


def _ico() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="ICO")
    return buf.getvalue()


def _bomb() -> bytes:
    """A 3000x3000 PNG (9 M pixels over the test server's 1 M), 30 kB on the wire."""
    return _png(Image.new("L", (3000, 3000)))


@pytest.mark.parametrize("body, status, message", [
    (dict(json={"image": "", "task": "<OD>"}), 400, "empty image"),
    (dict(json={"image": "@@@", "task": "<OD>"}), 400, "not valid base64"),
    (dict(json={"image": "https://example.com/a.jpg", "task": "<OD>"}), 400, "never fetches URLs"),
    (dict(json={"image": base64.b64encode(b"GIF89a broken").decode(), "task": "<OD>"}), 400, "not an image"),
    (dict(json={"image": "", "task": "<NO_SUCH_TASK>"}), 400, "/v1/tasks"),
    (dict(json={"image": "", "task": "<OD>", "colour": "red"}), 400, "colour"),
    (dict(json={"task": "<OD>"}), 400, "image"),
    (dict(data=b"{not json", headers={"content-type": "application/json"}), 400, "neither JSON"),
    (dict(files={"image": ("b.png", _bomb(), "image/png")}, data={"task": "od"}), 413, "over the server's limit"),
    (dict(data=b"x" * (2 << 20), headers={"content-type": "application/json"}), 413, "limit"),
    (dict(files={"photo": ("b.png", b"", "image/png")}, data={"task": "od"}), 400, "unknown field"),
    (dict(files={"image": ("b.png", b"", "image/png")}, data={"task": "od"}), 400, "empty image"),
    (dict(files={"image": ("a.ico", _ico(), "image/x-icon")}, data={"task": "od"}), 400, "JPEG, PNG, WEBP"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, status, message):
    r = server.post("/v1/predict", **body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize("task, text, gen, message", [
    ("<OD>", "a cat", {}, "takes no text input"),
    ("<CAPTION_TO_PHRASE_GROUNDING>", None, {}, "needs a text input"),
    ("<REGION_TO_CATEGORY>", "left side", {}, "region"),
    ("<REGION_TO_CATEGORY>", [1, 2, 3], {}, "region"),
    ("<OD>", None, {"num_beams": 4}, "num_beams must be between 1 and 3"),
    ("<OD>", None, {"max_new_tokens": 65}, "max_new_tokens must be between 1 and 64"),
    ("<OD>", None, {"score_threshold": 2}, "score_threshold"),
    ("<OD>", None, {"nms": 0}, "nms must be a number in (0, 1]"),
    ("<VQA>", ["what?", "why?"], {}, "needs a text input (a string)"),
    ("<CAPTION>", None, {"classes": ["cat"]}, "classes does not apply"),
    ("<OD>", None, {"classes": ["<loc_1>"]}, "a class must not contain '<'"),
    ("<OD>", None, {"classes": ["car", " "]}, "classes must be up to 1000 non-empty strings"),
    ("<OD>", None, {"grammar": "yes"}, "grammar: Input should be a valid boolean"),
    ("<CAPTION>", None, {"tile": 32}, "tile: <CAPTION> has no regions to merge"),
    ("<OD>", None, {"tile": 8}, "tile: tile size must be a whole number of pixels >= 16"),
    ("<OD>", None, {"tile": 32, "tile_overlap": 1.5}, "tile: tile overlap must be a fraction in [0, 1)"),
    ("<OD>", None, {"tile": 16, "tile_overlap": 0.9}, "more than this server's 64: use larger tiles"),
    ("<OD>", None, {"tile_overlap": 0.3}, "tile_overlap needs tile"),
    ("<OPEN_VOCABULARY_DETECTION>", ["cat", ""], {}, "a string or a list of strings"),
    ("<CAPTION_TO_PHRASE_GROUNDING>", "a" * 1001, {}, "1001 characters, over the server's limit of 1000"),
])
def test_task_inputs_and_generation_options_are_checked(server, od_model, task, text, gen, message):
    r = server.post("/v1/predict", json=_json_request(od_model[1][0], task, text, gen))
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_bad_requests_in_flight_do_not_touch_the_good_ones(server, od_model, pipe):
    good = _requests(od_model[1])[:4]
    bad = [{"image": _b64(od_model[1][0]), "task": "<OD>", "num_beams": 9},
           {"image": base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode(), "task": "<OD>"}]
    bodies = [_json_request(*g) for g in good]
    mixed = [bodies[0], bad[0], bodies[1], bad[1], bodies[2], bodies[3]]
    with ThreadPoolExecutor(len(mixed)) as pool:
        answers = list(pool.map(lambda b: server.post("/v1/predict", json=b), mixed))
    assert [a.status_code for a in answers] == [200, 400, 200, 400, 200, 200]
    for (image, task, text, gen), a in zip(good, [answers[0], answers[2], answers[4], answers[5]]):
        _same(a.json()["result"], pipe(image, task, text, **gen)[task])


def test_a_full_queue_answers_503_with_retry_after(server, od_model):
    slow = {"items": [_json_request(od_model[1][k % 4], "<OD>", None, {"num_beams": 3, "max_new_tokens": 64})
                      for k in range(12)]}
    first = ThreadPoolExecutor(1).submit(server.post, "/v1/predict/batch", json=slow)
    deadline = time.time() + 30
    while server.metric("florence_queue_depth") < 12 and time.time() < deadline:
        time.sleep(0.02)
    assert server.metric("florence_queue_depth") == 12
    r = server.post("/v1/predict", json=_json_request(od_model[1][0], "<OD>", None, GEN))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "full" in r.json()["error"]
    assert first.result().status_code == 200  # the queued request is answered
    r = server.post("/v1/predict", json=_json_request(od_model[1][0], "<OD>", None, GEN))
    assert r.status_code == 200


def test_a_client_that_leaves_frees_its_slots(server, od_model):
    """12 slow images in flight, then the client closes its connection: the slots are free at once (the
    work would take seconds), the worker drops what it has not started, and the server answers."""
    body = json.dumps({"items": [_json_request(od_model[1][k % 4], "<OD>", None,
                                               {"num_beams": 3, "max_new_tokens": 64}) for k in range(12)]}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.time() + 30
        while server.metric("florence_queue_depth") < 12 and time.time() < deadline:
            time.sleep(0.02)
        assert server.metric("florence_queue_depth") == 12
    left = time.time()
    while server.metric("florence_queue_depth") > 0 and time.time() - left < 10:
        time.sleep(0.02)
    assert server.metric("florence_queue_depth") == 0
    r = server.post("/v1/predict", json=_json_request(od_model[1][0], "<OD>", None, GEN))
    assert r.status_code == 200 and r.json()["total_ms"] < 3000  # not behind the 12 images
    assert '"status": 499' in server.log.read_text()


def test_tasks_health_ready_docs_metrics_and_one_log_line_per_request(server):
    tasks = server.get("/v1/tasks").json()
    by_token = {t["token"]: t for t in tasks["tasks"]}
    assert by_token["<OD>"]["input"] is None and by_token["<CAPTION_TO_PHRASE_GROUNDING>"]["input"] == "text"
    assert by_token["<REGION_TO_CATEGORY>"]["input"] == "region" and tasks["limits"]["max_queue"] == 12
    assert server.get("/health").json() == {"status": "ok"} and server.get("/ready").status_code == 200
    spec = server.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/tasks"} <= set(spec["paths"])
    assert "/v1/_items" not in spec["paths"]
    metrics = server.get("/metrics").text
    assert 'florence_requests_total{path="/v1/predict",status="200"}' in metrics
    assert 'florence_requests_total{path="/v1/predict",status="400"}' in metrics
    assert server.metric("florence_batch_size_count") >= 1 and "florence_request_latency_seconds_bucket" in metrics
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith('{"method"')]
    predicted = [entry for entry in lines if entry["path"] == "/v1/predict" and entry["status"] == 200]
    assert predicted and {"ms", "client", "task", "images", "batch_size"} <= set(predicted[0])


def _slow(scenes, n=32):
    return {"items": [_json_request(scenes[k % 4], "<OD>", None, {"num_beams": 3, "max_new_tokens": 64})
                      for k in range(n)]}


def test_api_key_two_workers_and_sigterm_finishes_the_requests_in_flight(od_model, tmp_path):
    key = "s3cret-key-never-logged"
    s = Server(od_model[0], "--dtype", "float32", "--workers", "2", "--max-batch", "1",
               env={"FLORENCE_API_KEY": key}, log=tmp_path / "server.log")
    try:
        body = _json_request(od_model[1][0], "<OD>", None, GEN)
        assert s.post("/v1/predict", json=body).status_code == 401
        assert s.post("/v1/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert s.get("/v1/tasks").status_code == 401 and s.get("/metrics").status_code == 401
        assert s.get("/health").status_code == 200 and s.get("/ready").status_code == 200
        auth = {"X-API-Key": key}
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: s.post("/v1/predict", json=body, headers=auth), range(16)))
        assert all(a.status_code == 200 for a in answers)
        assert len({a.json()["timing"]["worker"] for a in answers}) == 2  # both workers answered

        in_flight = ThreadPoolExecutor(1).submit(s.post, "/v1/predict/batch", json=_slow(od_model[1]),
                                                 headers={"Authorization": f"Bearer {key}"})
        deadline = time.time() + 30
        while s.metric("florence_queue_depth", headers=auth) < 32 and time.time() < deadline:
            time.sleep(0.02)
        s.proc.send_signal(signal.SIGTERM)
        r = in_flight.result()
        assert r.status_code == 200 and all("result" in x for x in r.json()["results"])
        assert s.proc.wait(60) is not None
        deadline = time.time() + 30  # and so are its HTTP process, model workers and queue manager
        while time.time() < deadline:
            try:
                os.killpg(s.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        with pytest.raises(ProcessLookupError):
            os.killpg(s.proc.pid, 0)
    finally:
        s.stop()
    assert key not in s.log.read_text()


def test_a_request_past_the_timeout_gets_504_and_its_images_are_dropped(od_model, tmp_path):
    """64 slow images (seconds of work) against a 2 s timeout: 504; the worker then skips the images past
    their deadline, so the next request is answered at once."""
    s = Server(od_model[0], "--dtype", "float32", "--max-batch", "2", "--timeout", "2", "--max-batch-items", "64",
               log=tmp_path / "server.log")
    try:
        single = _json_request(od_model[1][0], "<OD>", None, GEN)
        assert s.post("/v1/predict", json=single).status_code == 200  # warm
        r = s.post("/v1/predict/batch", json=_slow(od_model[1], 64))
        assert r.status_code == 504 and "timeout of 2 s" in r.json()["error"]
        r = s.post("/v1/predict", json=single)
        assert r.status_code == 200 and r.json()["total_ms"] < 1500
    finally:
        s.stop()


def test_onnxruntime_backend_answers_as_its_pipeline(od_model, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (bash tools/install.sh --onnx)")
    from florence.deploy import export_onnx

    folder = export_onnx(od_model[0], tmp_path / "onnx")
    ort_pipe = florence.pipeline(folder, backend="onnxruntime")
    s = Server(folder, "--backend", "onnxruntime", "--max-wait-ms", "300", log=tmp_path / "server.log")
    try:
        reqs = _requests(od_model[1])[:4]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda r: s.post("/v1/predict", json=_json_request(*r)), reqs))
        for (image, task, text, gen), a in zip(reqs, answers):
            assert a.status_code == 200, a.text
            _same(a.json()["result"], ort_pipe(image, task, text, **gen)[task])
    finally:
        s.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (Debian's chromium package; "
                                                          "bash tools/install.sh --test installs it)")
def test_the_page_draws_the_boxes_the_api_returns(server, od_model, tmp_path):
    """Headless Chromium opens /, uploads a scene, runs <OD>: the drawn boxes are the API's; the slider
    hides the boxes scored below it without a new request."""
    from playwright.sync_api import sync_playwright

    scene = tmp_path / "scene.png"
    od_model[1][2].resize((1200, 800), Image.NEAREST).save(scene)  # shown scaled down, not square
    api = server.post("/v1/predict", files={"image": ("scene.png", scene.read_bytes(), "image/png")},
                      data={"task": "<OD>"}).json()["result"]
    assert len(api["bboxes"]) >= 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            posts = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('#task option').length > 10")
            page.set_input_files("#file", str(scene))
            page.select_option("#task", "<OD>")
            page.click("#run")
            page.wait_for_selector("body[data-done='1']", timeout=60_000)
            # where the boxes are on the screen, in the image's pixels
            rects = page.evaluate("""() => {
                const img = document.getElementById('image').getBoundingClientRect();
                const sx = document.getElementById('image').naturalWidth / img.width;
                const sy = document.getElementById('image').naturalHeight / img.height;
                return [...document.querySelectorAll('#overlay rect.item')].map(e => {
                    const r = e.getBoundingClientRect();
                    return {box: [(r.left - img.left) * sx, (r.top - img.top) * sy, (r.right - img.left) * sx,
                                  (r.bottom - img.top) * sy], label: e.dataset.label, score: +e.dataset.score};
                });
            }""")
            assert len(rects) == len(api["bboxes"])
            for r, box, label, score in zip(rects, api["bboxes"], api["labels"], api["scores"]):
                assert r["box"] == pytest.approx(box, abs=1.0)
                assert r["label"] == label and r["score"] == pytest.approx(score, abs=1e-9)
            assert json.loads(page.inner_text("#json"))["result"] == api
            page.screenshot(path=str(tmp_path / "page.png"))
            # between the two highest scores, in few digits: Chromium's range input rounds a 16-digit value
            ranked = sorted(set(api["scores"]))
            assert len(ranked) >= 2
            threshold = round((ranked[-1] + ranked[-2]) / 2, 6)
            page.eval_on_selector("#threshold",
                                  f"e => {{ e.value = {threshold!r}; e.dispatchEvent(new Event('input')); }}")
            assert float(page.input_value("#threshold")) == pytest.approx(threshold, abs=1e-9)
            shown = page.eval_on_selector_all("#overlay rect.item", "els => els.map(e => +e.dataset.score)")
            assert shown == [s for s in api["scores"] if s >= threshold] and 0 < len(shown) < len(api["scores"])
            assert len(posts) == 1  # the slider did not ask the server again
        finally:
            browser.close()
