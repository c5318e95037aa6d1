"""``florence serve`` under load: throughput and latency with dynamic batching vs batching off.

    python benchmarks/serve.py                                  # tiny + base, torch + onnxruntime
    python benchmarks/serve.py --presets base --backends torch --clients 1 4 16 --requests 32

Loopback only, bounded: per preset and backend, a random-weight model with the published
vocabulary (``vs_transformers.py``'s, no download) is written as a model folder (and exported with
``florence export-onnx`` for the onnxruntime backend), then served twice, one server at a time:
batching on (``--max-batch``, ``--max-wait-ms``) and off (``--max-batch 1``). For each client count,
that many clients each send their share of ``--requests`` one after another (640x480 images, tasks
cycling over <OD>, <CAPTION>, <OCR>, <DENSE_REGION_CAPTION>; 3 beams, ``--tokens`` new tokens at most:
random weights rarely stop early, and a request's answer is the same in both servers, so both do the
same work). Prints images/s and p50/p99 latency per client count, throughput on/off, and p99 at the
most clients vs the median single-request latency (1 client, batching on). Run on an otherwise idle
machine; dtype ``auto`` (bf16 where the CPU computes it natively, else float32).
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_transformers as vt  # noqa: E402  (random models with the published vocabulary)

TASKS = ["<OD>", "<CAPTION>", "<OCR>", "<DENSE_REGION_CAPTION>"]


def model_folders(preset: str, tmp: str, backends) -> dict:
    import florence
    from florence.deploy import export_onnx, write_model_folder

    raw, folder = os.path.join(tmp, f"{preset}_raw"), os.path.join(tmp, preset)
    vt.save_random_model(preset, raw)
    model = florence.Florence2ForConditionalGeneration.from_pretrained(raw)
    write_model_folder(model, vt.tokenizer(), folder, image_size=768)
    out = {"torch": folder}
    if "onnxruntime" in backends:
        out["onnxruntime"] = str(export_onnx(folder, os.path.join(tmp, f"{preset}_onnx")))
    return out


class Server:
    def __init__(self, folder: str, *options: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "florence.cli", "serve", folder, "--port", str(self.port),
                                      "--log-level", "warning", "--max-queue", "256", *options],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"florence serve {folder} {' '.join(options)} exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server was not ready in 600 s")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def bodies(n: int, tokens: int) -> list[dict]:
    rs = np.random.RandomState(0)
    out = []
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray((rs.rand(480, 640, 3) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append({"image": base64.b64encode(buf.getvalue()).decode(), "task": TASKS[k % len(TASKS)],
                    "num_beams": 3, "max_new_tokens": tokens})
    return out


def load(url: str, work: list[dict], clients: int) -> tuple[float, list[float], list]:
    """Wall seconds, per-request latencies and answers: ``clients`` threads, each sending its share
    of ``work`` one request after another."""
    shares = [work[c::clients] for c in range(clients)]

    def client(share):
        out = []
        for body in share:
            t0 = time.perf_counter()
            r = requests.post(url + "/v1/predict", json=body, timeout=3600)
            r.raise_for_status()
            out.append((time.perf_counter() - t0, r.json()["result"]))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(client, shares))
    wall = time.perf_counter() - t0
    return wall, [lat for share in done for lat, _ in share], [res for share in done for _, res in share]


def without_scores(result):
    return {k: v for k, v in result.items() if k != "scores"} if isinstance(result, dict) else result


def pct(values, q):
    return float(np.percentile(values, q))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=32,
                        help="requests per client count (6 for 1 client, at least 2 per client)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    args = parser.parse_args()
    from florence import hardware

    print(f"florence serve benchmark | {hardware.describe()} | {os.cpu_count()} cores | 3 beams, <= {args.tokens} "
          f"new tokens | batching on: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            folders = model_folders(preset, tmp, args.backends)
            for backend in args.backends:
                measured = {}
                for mode, options in (("on", ["--max-batch", str(args.max_batch), "--max-wait-ms",
                                              str(args.max_wait_ms)]), ("off", ["--max-batch", "1"])):
                    server = Server(folders[backend], "--backend", backend, *options)
                    try:
                        requests.post(server.url + "/v1/predict", json=bodies(1, args.tokens)[0]).raise_for_status()
                        for clients in args.clients:
                            n = 6 if clients == 1 else max(args.requests, 2 * clients)
                            wall, lat, results = load(server.url, bodies(n, args.tokens), clients)
                            measured[mode, clients] = (n / wall, lat, results)
                            print(f"[{preset} {backend} batching {mode}] {clients:3d} clients: {n / wall:6.2f} img/s, "
                                  f"p50 {pct(lat, 50):6.2f} s, p99 {pct(lat, 99):6.2f} s", flush=True)
                    finally:
                        server.stop()
                for clients in args.clients:
                    differ = sum(without_scores(a) != without_scores(b)
                                 for a, b in zip(measured["on", clients][2], measured["off", clients][2]))
                    rows.append((preset, backend, clients, measured["on", clients], measured["off", clients], differ))
                single = statistics.median(measured["on", min(args.clients)][1])
                top = max(args.clients)
                print(f"[{preset} {backend}] at {top} clients: throughput on/off "
                      f"{measured['on', top][0] / measured['off', top][0]:.2f}x, p99 / single-request latency "
                      f"{pct(measured['on', top][1], 99) / single:.2f}x", flush=True)
    print("\n| model | backend | clients | on: img/s | on: p50 s | on: p99 s | off: img/s | off: p50 s | off: p99 s "
          "| on / off |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, backend, clients, on, off, differ in rows:
        print(f"| {preset} | {backend} | {clients} | {on[0]:.2f} | {pct(on[1], 50):.2f} | {pct(on[1], 99):.2f} | "
              f"{off[0]:.2f} | {pct(off[1], 50):.2f} | {pct(off[1], 99):.2f} | {on[0] / off[0]:.2f}x"
              + (f" ({differ} of {len(on[2])} answers differ)" if differ else "") + " |")


if __name__ == "__main__":
    main()
