"""florence vs transformers' native Florence-2, side by side in one process, same random weights.

    python benchmarks/vs_transformers.py                          # the README table: base, fp32 + bf16
    python benchmarks/vs_transformers.py --presets base large     # large too (slow in fp32)
    python benchmarks/vs_transformers.py --sections b1 b2 --dtypes bf16 --reps 3

One model per preset is built with random weights, saved in the transformers-native layout and
loaded by both florence and ``transformers.Florence2ForConditionalGeneration`` (so both hold the same
weights). Both get the same inputs: images preprocessed by each side's own processor (florence's and
transformers' PIL-backend CLIP processor configured as published; their pixels agree to 1e-5),
prompts from one tokenizer (an offline BPE padded to BART's 50265 ids, so the Florence tokens get
their published ids). bf16 means the whole model in bf16 on both sides for inference ("pure bf16") and
bf16 autocast over fp32 weights for training. Sections:

- B1 image encoding at 768 px (tower + projector), batch 1 and 8; florence's achieved FLOP/s as a
  fraction of the measured matmul peak.
- B2 ``<OD>`` end to end, batch 1: preprocess + encode + generate 64 forced new tokens, greedy and 3
  beams (published settings otherwise: no_repeat_ngram_size=3, forced <s>/</s>).
- B3 8 images with mixed tasks: ``florence.pipeline`` (one batch, results parsed, per-box scores on) vs
  the reference called image by image as its model card shows (processor, generate, batch_decode,
  post_process_generation); 3 beams, 32 forced new tokens each.
- B4 one training step (forward + backward + AdamW step), tiny and base, batch 2 at 768 px; fused
  AdamW on both sides (transformers' Trainer default with torch >= 2.8, and florence's configs').

Floors (notes column): the time no implementation of this model can beat on this machine, from
measured limits: the matmul FLOPs of tower and encoder (counted on the reference) at the measured
matmul peak, plus one read of the decoder's weights per decoding step (florence's step reads every
decoder matrix but the cross-attention keys/values, and the LM head) at the measured memory bandwidth
of a 1 GiB copy. A target whose floor ratio is beyond it cannot be met by speed-ups of the same
computation. B4 notes give the training step's FLOPs (forward + backward, counted) per second.

Timings are medians of ``--reps`` runs after one warm-up, ours and the reference alternating. Outputs
are checked: token ids (B2, B3 texts) must be equal; B1 features and B4 losses are compared. Peak
memory is the peak resident set size of a separate process per side and dtype that loads only that
side's model and runs every section once (``/proc/self/status`` VmHWM, reset per section).
Ids >= 51289 (the native layout's ``<image>`` and padding rows) are suppressed on both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

import florence
import florence.accel
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
from florence import hardware
from florence.processing.tokenizer import BART_VOCAB_SIZE, build_tokenizer
from florence.task import region_tokens

VOCAB = 51289  # BART's 50265 + the 1024 Florence tokens
TEXTS = ["What does the image describe?", "Locate the objects with category name in the image.",
         "a red car next to a green tree", "What is the text in the image?"]
SECTIONS = ("b1", "b2", "b3", "b4")
TARGETS = {  # (section, dtype or None) -> (max time ratio ours/ref, label)
    ("b1", None): (0.8, "<= 0.8x"),
    ("b2-greedy", "fp32"): (0.65, "<= 0.65x"), ("b2-greedy", "bf16"): (0.5, "<= 0.5x"),
    ("b3", None): (1 / 3, ">= 3x thr."),
    ("b4", None): (1 / 1.3, ">= 1.3x thr."),
}


# ---------------------------------------------------------------------------------------------
# models, processors, inputs
# ---------------------------------------------------------------------------------------------
def randomize_(model, seed=0):
    """Weights under which generation depends on the image and prompt: unit-norm embedding rows x4 and
    BART matrices at std 1/sqrt(fan_in). (At the default init every step emits the same token.)"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("shared.weight"):
                p.copy_(torch.nn.functional.normalize(torch.randn(p.shape, generator=g), dim=-1) * 4)
            elif p.ndim >= 2 and name.startswith("language_model.") and "embed_positions" not in name:
                p.normal_(0, p.shape[-1] ** -0.5, generator=g)


def save_random_model(preset: str, folder: str):
    """A preset with random weights, saved in the transformers-native layout (vocabulary 51289 +
    <image>, padded to a multiple of 64, as published)."""
    cfg = Florence2Config.preset(preset, vocab_size=(VOCAB + 1 + 63) // 64 * 64, dropout=0.0, attention_dropout=0.0)
    cfg.vision.drop_path_rate = 0.0  # deterministic training steps: both sides compute the same loss
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(cfg)
    randomize_(model)
    model.save_pretrained(folder)


def tokenizer():
    return build_tokenizer(TEXTS, vocab_size=300, pad_to=BART_VOCAB_SIZE)


def native_processor(tok):
    """transformers' Florence2Processor as published: CLIP image processing (PIL backend, the one whose
    pixels equal florence's; bicubic 768x768, no crop, ImageNet mean/std), the tokenizer + <image>."""
    import copy

    from transformers import CLIPImageProcessorPil
    from transformers import Florence2Processor as NativeProcessor

    tok = copy.deepcopy(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    tok.image_token, tok.image_token_id = "<image>", tok.convert_tokens_to_ids("<image>")
    assert tok.image_token_id == VOCAB
    images = CLIPImageProcessorPil(
        do_resize=True, size={"height": 768, "width": 768}, resample=Image.Resampling.BICUBIC,
        do_center_crop=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True, image_seq_length=577)
    from florence.tasks.grounding import NON_OBJECT_PHRASES

    parsers = ("ocr", "phrase_grounding", "pure_text", "description_with_bboxes", "description_with_polygons",
               "polygons", "bboxes", "description_with_bboxes_or_polygons")
    config = {name: {} for name in parsers}  # the published post-processing config
    config.update(ocr={"AREA_THRESHOLD": 0.0}, phrase_grounding={"banned_grounding_tokens": sorted(NON_OBJECT_PHRASES)})
    return NativeProcessor(image_processor=images, tokenizer=tok, post_processor_config=config)


def load(side: str, folder: str, dtype: str):
    if side == "ours":  # florence.accel, as florence.pipeline and the engine run it on CPU
        model = florence.accel.apply(Florence2ForConditionalGeneration.from_pretrained(folder))
    else:
        import transformers

        model = transformers.Florence2ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return model.to(torch.bfloat16 if dtype == "bf16" else torch.float32).eval()


def images(n: int, seed: int = 0) -> list:
    rs = np.random.RandomState(seed)
    return [Image.fromarray((rs.rand(480, 640, 3) * 255).astype(np.uint8)) for _ in range(n)]


def generation(tokens: int, beams: int) -> dict:
    """The published generation settings, every sequence forced to ``tokens`` new tokens."""
    return dict(do_sample=False, num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens,
                no_repeat_ngram_size=3, early_stopping=True, forced_bos_token_id=0, forced_eos_token_id=2,
                decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                suppress_tokens=list(range(VOCAB, VOCAB + 39)))


# ---------------------------------------------------------------------------------------------
# workloads: each returns a zero-argument callable whose result is compared between the sides
# ---------------------------------------------------------------------------------------------
class Workloads:
    def __init__(self, side: str, model, tok, dtype: str):
        self.side, self.model, self.tok, self.dtype = side, model, tok, dtype
        self.proc = Florence2Processor(tok) if side == "ours" else native_processor(tok)
        self.pixels = self.proc.image_processor(images(8, seed=1)) if side == "ours" else \
            self.proc.image_processor(images(8, seed=1), return_tensors="pt")["pixel_values"]
        self.pixels = self.pixels.to(model.dtype)

    @torch.inference_mode()
    def _encode(self, n):
        x = self.pixels[:n]
        if self.side == "ours":
            return self.model.encode_image(x)
        return self.model.model.get_image_features(x).pooler_output

    def b1(self, n):
        return lambda: self._encode(n).float()

    def b2(self, beams):
        image, gen = images(1, seed=2)[0], generation(64, beams)
        if self.side == "ours":
            prompt = florence.get_task("<OD>").prompt()

            @torch.inference_mode()
            def run():
                b = self.proc(images=[image], text=[prompt])
                return self.model.generate(b["pixel_values"], b["input_ids"], b["attention_mask"], **gen).tolist()
        else:
            @torch.inference_mode()
            def run():
                inputs = self.proc(text="<OD>", images=image, return_tensors="pt").to(self.model.dtype)
                return self.model.generate(**inputs, **gen).tolist()
        return run

    def b3_inputs(self):
        ims = images(8, seed=3)
        tasks = florence.list_tasks()[::2][:8]  # every other task: text, box, region-input, polygon tasks
        rng = random.Random(0)
        return ims, tasks, [t.example(rng, im.size)[0] for t, im in zip(tasks, ims)]

    def b3(self):
        ims, tasks, inputs = self.b3_inputs()
        gen = generation(32, 3)
        if self.side == "ours":
            texts = []

            class Recording(florence.Pipeline):  # keeps the generated texts to compare with the reference's
                def generate_texts(self, images, prompts, **kw):
                    out = super().generate_texts(images, prompts, **kw)
                    texts.extend(out[0])
                    return out

            pipe = Recording(self.model, self.proc, block_location_ngrams=True)  # the published n-gram blocking

            def run():
                texts.clear()
                pipe(ims, tasks, inputs, batch_size=8, **gen)
                return [t.replace("<pad>", "") for t in texts]
            return run

        def prompt(task, x, size):
            return task.token + ("" if x is None else x if isinstance(x, str) else region_tokens(x, size))

        @torch.inference_mode()
        def run():
            texts = []
            for im, task, x in zip(ims, tasks, inputs):
                b = self.proc(text=prompt(task, x, im.size), images=im, return_tensors="pt").to(self.model.dtype)
                text = self.proc.batch_decode(self.model.generate(**b, **gen), skip_special_tokens=False)[0]
                self.proc.post_process_generation(text, task=task.token, image_size=im.size)
                texts.append(text.replace("<pad>", ""))
            return texts
        return run


def train_step(side: str, model, tok, dtype: str, batch: int = 2, target_tokens: int = 32):
    """One optimisation step on fixed inputs; returns the loss."""
    g = torch.Generator().manual_seed(4)
    pixels = torch.randn(batch, 3, 768, 768, generator=g)
    prompt = tok([florence.get_task("<OD>").prompt()] * batch, return_tensors="pt")
    labels = torch.randint(4, VOCAB, (batch, target_tokens), generator=g)
    labels[:, 0], labels[:, -1] = 0, 2
    if side == "ours":
        inputs = dict(pixel_values=pixels, input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"])
    else:  # the native port reads 577 <image> placeholders before the prompt
        image = torch.full((batch, 577), VOCAB)
        inputs = dict(pixel_values=pixels, input_ids=torch.cat([image, prompt["input_ids"]], 1),
                      attention_mask=torch.cat([torch.ones_like(image), prompt["attention_mask"]], 1))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return run


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def compare(ref_fn, our_fn, reps: int):
    """(ref seconds, ours seconds, ref result, ours result): medians over ``reps`` alternating runs,
    after one warm-up run each."""
    ref_out, our_out = ref_fn(), our_fn()
    ref_t, our_t = [], []
    for i in range(reps):
        for fn, ts in ((ref_fn, ref_t), (our_fn, our_t))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ref_t), statistics.median(our_t), ref_out, our_out


def matmul_peak(dtype) -> tuple[float, str]:
    """Best GFLOP/s of square matmuls (torch.matmul and oneDNN's inner product, 1024-4096)."""
    best, how = 0.0, ""
    slow = dtype == torch.bfloat16 and not hardware.native_bf16("cpu")  # ~1 GFLOP/s: 4096^3 would take minutes
    for n in (1024,) if slow else (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        kernels = {"torch.matmul": lambda: a @ b}
        if dtype in hardware.onednn_dtypes():
            kernels["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [None], "")
        for name, fn in kernels.items():
            fn()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            gflops = 2 * n ** 3 / min(ts) / 1e9
            if gflops > best:
                best, how = gflops, f"{name} {n}x{n}"
    return best, how


def count_flops(fn) -> float:
    """FLOPs of ``fn()``, counted by torch's FlopCounterMode. Run it on the reference: the counter
    knows plain aten ops, not oneDNN's linear."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.inference_mode()
def vision_flops(reference) -> float:
    """FLOPs of one image's tower + projector."""
    return count_flops(lambda: reference.model.get_image_features(torch.zeros(1, 3, 768, 768, dtype=reference.dtype)))


@torch.inference_mode()
def encoder_flops(reference, tokens: int = 590) -> float:
    """FLOPs of the BART encoder over one image's 577 visual tokens and a prompt."""
    d = reference.config.text_config.d_model
    return count_flops(lambda: reference.get_encoder()(inputs_embeds=torch.zeros(1, tokens, d, dtype=reference.dtype)))


def train_flops(reference, tok, dtype: str) -> float:
    """FLOPs of one B4 training step, forward and backward."""
    return count_flops(train_step("ref", reference, tok, dtype))


def memory_bandwidth() -> float:
    """GB/s moved by a 1 GiB copy (bytes read + written): the bound of a decoding step, which reads
    every decoder weight once for a handful of rows."""
    src = torch.ones(2 ** 28)
    dst = torch.empty_like(src).copy_(src)
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        dst.copy_(src)
        ts.append(time.perf_counter() - t0)
    return 2 * src.numel() * src.element_size() / min(ts) / 1e9


def decode_bytes(model) -> int:
    """Bytes of weights florence's decoding step reads: every decoder matrix except the cross-attention
    keys/values (projected once per input) and the LM head."""
    layers = model.language_model.model.decoder.layers
    n = sum(p.numel() for name, p in layers.named_parameters() if p.ndim == 2
            and not re.search(r"encoder_attn\.(k|v)_proj", name))
    head = model.language_model.lm_head.weight
    return (n + head.numel()) * head.element_size()


def hwm_gb() -> float:
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 2 ** 20


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def touch_(model):
    """Read every weight once: loading may leave them memory-mapped and not yet resident, and the
    first workload would then count the weights it happens to read."""
    for t in list(model.parameters()) + list(model.buffers()):
        t.sum()
    return model


def memory_child(side: str, dtype: str, folders: dict, sections) -> dict:
    """Peak RSS (GB) of each workload, in this process holding only ``side``'s model."""
    tok, out = tokenizer(), {}
    for preset, folder in folders.items():
        if set(sections) & {"b1", "b2", "b3"}:
            w = Workloads(side, touch_(load(side, folder, dtype)), tok, dtype)
            fns = {}
            if "b1" in sections:
                fns.update({f"b1-{n}": w.b1(n) for n in (1, 8)})
            if "b2" in sections:
                fns.update({"b2-greedy": w.b2(1), "b2-beams": w.b2(3)})
            if "b3" in sections:
                fns["b3"] = w.b3()
            for key, fn in fns.items():
                reset_hwm()
                fn()
                out[f"{preset}/{key}"] = hwm_gb()
            del w
    if "b4" in sections:
        for preset, folder in folders.items():
            reset_hwm()
            train_step(side, touch_(load(side, folder, "fp32")), tok, dtype)()
            out[f"{preset}/b4"] = hwm_gb()
    return out


def run_memory_children(folders: dict, dtype: str, sections) -> dict:
    peaks = {}
    for side in ("ref", "ours"):
        cmd = [sys.executable, __file__, "--memory-child", side, dtype, "--threads", str(torch.get_num_threads()),
               "--folders", json.dumps(folders), "--sections", *sections]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"memory measurement ({side}, {dtype}) failed:\n{res.stderr[-3000:]}")
        peaks[side] = json.loads(res.stdout.strip().splitlines()[-1])
    return peaks


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def target_for(key: str, dtype: str):
    case = key.split("/")[1]  # e.g. b1-8, b2-greedy, b3
    for name in (case, case.split("-")[0]):
        for dt in (dtype, None):
            if (name, dt) in TARGETS:
                return TARGETS[name, dt]
    return None


def row(results, key, dtype, ref_t, our_t, agree, tokens=0, peak=None, extra=""):
    target = target_for(key, dtype)
    ratio = our_t / ref_t
    met = "" if target is None else ("met" if ratio <= target[0] else "MISSED")
    r = dict(case=key, dtype=dtype, ref_s=ref_t, ours_s=our_t, ratio=ratio, target=target[1] if target else "",
             met=met, agree=agree, extra=extra)
    if tokens:
        r.update(ref_tok_s=tokens / ref_t, ours_tok_s=tokens / our_t)
    if peak:
        r.update(ref_gb=peak["ref"].get(key), ours_gb=peak["ours"].get(key))
    results.append(r)
    mem = f" | mem {r['ref_gb']:.2f} / {r['ours_gb']:.2f} GB" if r.get("ref_gb") else ""
    print(f"  {key:18s} {dtype}: ref {ref_t:7.2f} s  ours {our_t:7.2f} s  ratio {ratio:5.2f} {r['target']} "
          f"{met}  agree: {agree}{mem} {extra}", flush=True)


def table(results, header: str) -> str:
    lines = [header, "",
             "| case | dtype | reference s | florence s | ratio | target | tokens/s ref / ours | peak GB ref / ours | outputs | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        tok = f"{r['ref_tok_s']:.1f} / {r['ours_tok_s']:.1f}" if "ref_tok_s" in r else ""
        mem = ""
        if r.get("ref_gb") is not None:
            mem = f"{r['ref_gb']:.2f} / {r['ours_gb']:.2f}" + (" (above)" if r["ours_gb"] > r["ref_gb"] else "")
        target = f"{r['target']} {r['met']}".strip()
        lines.append(f"| {r['case']} | {r['dtype']} | {r['ref_s']:.2f} | {r['ours_s']:.2f} | {r['ratio']:.2f} | "
                     f"{target} | {tok} | {mem} | {r['agree']} | {r['extra']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["base"], choices=["tiny", "base", "large"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--train-presets", nargs="+", default=["tiny", "base"], choices=["tiny", "base", "large"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--b1-batches", nargs="+", type=int, default=[1, 8], help="B1 batch sizes")
    parser.add_argument("--bf16-anyway", action="store_true",
                        help="run the bf16 sections on a CPU without native bf16 too (slow fallbacks)")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child, json.loads(args.folders), args.sections)))
        return

    start = time.perf_counter()
    print(f"florence vs transformers {transformers.__version__} native Florence-2 | torch {torch.__version__} | "
          f"{args.threads} threads | reps {args.reps} | {hardware.describe()}", flush=True)
    skipped = []
    if "bf16" in args.dtypes and not hardware.native_bf16("cpu") and not args.bf16_anyway:
        args.dtypes = [dt for dt in args.dtypes if dt != "bf16"]
        skipped.append("bf16 skipped: no native bf16 (--bf16-anyway runs it through the fallbacks)")
        print(skipped[-1], flush=True)
    peaks = {dt: matmul_peak(torch.float32 if dt == "fp32" else torch.bfloat16) for dt in args.dtypes}
    for dt, (gf, how) in peaks.items():
        print(f"matmul peak {dt}: {gf:.0f} GFLOP/s ({how})", flush=True)
    bandwidth = memory_bandwidth()
    print(f"memory bandwidth: {bandwidth:.1f} GB/s (1 GiB copy, read + write)", flush=True)
    tok, results = tokenizer(), []
    with tempfile.TemporaryDirectory() as tmp:
        infer_sections = [s for s in args.sections if s != "b4"]
        train_presets = args.train_presets if "b4" in args.sections else []
        folders = {p: os.path.join(tmp, p) for p in dict.fromkeys(args.presets + train_presets)}
        for p, f in folders.items():
            save_random_model(p, f)
        for dtype in args.dtypes:
            mem = None
            if not args.no_memory:
                mem = run_memory_children({p: folders[p] for p in args.presets}, dtype, infer_sections) \
                    if infer_sections else {"ref": {}, "ours": {}}
                if train_presets:
                    extra = run_memory_children({p: folders[p] for p in train_presets}, dtype, ["b4"])
                    for side in mem:
                        mem[side].update(extra[side])
            for preset in args.presets if infer_sections else []:
                print(f"[{preset} {dtype}]", flush=True)
                ref = Workloads("ref", load("ref", folders[preset], dtype), tok, dtype)
                ours = Workloads("ours", load("ours", folders[preset], dtype), tok, dtype)
                # floors: matmul FLOPs at the measured peak, and decoding steps reading their weights at the
                # measured memory bandwidth (what no implementation of this model beats on this machine)
                flops, enc_flops = vision_flops(ref.model), encoder_flops(ref.model)
                step_s = decode_bytes(ours.model) / bandwidth / 1e9
                peak_flops = peaks[dtype][0] * 1e9
                if "b1" in infer_sections:
                    for n in args.b1_batches:
                        rt, ot, a, b = compare(ref.b1(n), ours.b1(n), args.reps)
                        err = ((a - b).abs().max() / a.abs().max()).item()
                        frac = flops * n / ot / 1e9 / peaks[dtype][0]
                        row(results, f"{preset}/b1-{n}", dtype, rt, ot, f"max rel. diff {err:.1e}", peak=mem,
                            extra=f"{flops * n / ot / 1e9:.0f} GFLOP/s = {frac:.0%} of peak")
                if "b2" in infer_sections:
                    for name, beams in (("greedy", 1), ("beams", 3)):
                        rt, ot, a, b = compare(ref.b2(beams), ours.b2(beams), args.reps)
                        floor = (flops + enc_flops) / peak_flops + 64 * step_s
                        row(results, f"{preset}/b2-{name}", dtype, rt, ot, "ids equal" if a == b else
                            f"ids DIFFER ({sum(x == y for x, y in zip(a[0], b[0]))}/{len(a[0])} positions equal)",
                            tokens=64, peak=mem, extra=f"floor {floor:.2f} s = {floor / rt:.2f}x")
                if "b3" in infer_sections:
                    rt, ot, a, b = compare(ref.b3(), ours.b3(), max(1, args.reps - 1))
                    floor = 8 * (flops + enc_flops) / peak_flops + 32 * step_s
                    row(results, f"{preset}/b3", dtype, rt, ot, f"{sum(x == y for x, y in zip(a, b))}/{len(a)} texts equal",
                        tokens=8 * 32, peak=mem, extra=f"throughput {rt / ot:.1f}x; floor {floor:.2f} s = {rt / floor:.1f}x")
                del ref, ours
            for preset in train_presets:
                print(f"[train {preset} {dtype}]", flush=True)
                step_flops = train_flops(load("ref", folders[preset], "fp32"), tok, dtype)
                rt, ot, a, b = compare(train_step("ref", load("ref", folders[preset], "fp32"), tok, dtype),
                                       train_step("ours", load("ours", folders[preset], "fp32"), tok, dtype),
                                       args.reps)
                row(results, f"{preset}/b4", dtype, rt, ot, f"loss {a:.4f} / {b:.4f}", peak=mem,
                    extra=f"throughput {rt / ot:.2f}x" + (" (autocast)" if dtype == "bf16" else "")
                    + f"; {step_flops / ot / 1e9:.0f} GFLOP/s = {step_flops / ot / 1e9 / peaks[dtype][0]:.0%} of peak")
    minutes = (time.perf_counter() - start) / 60
    header = (f"{args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}; "
              + f"{hardware.describe()}; " + "".join(f"{s}; " for s in skipped)
              + "; ".join(f"matmul peak {dt} {gf:.0f} GFLOP/s" for dt, (gf, _) in peaks.items())
              + f"; memory bandwidth {bandwidth:.0f} GB/s"
              + f"; ran {minutes:.1f} min")
    print()
    print(table(results, header))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(header=header, peaks=peaks, results=results), f, indent=1)


if __name__ == "__main__":
    main()
