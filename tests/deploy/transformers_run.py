"""Run by the export tests in a process where florence cannot be imported: transformers alone loads
an exported folder (``AutoProcessor``, ``AutoModelForImageTextToText``), generates for each request and
post-processes with ``processor.post_process_generation``.

    python transformers_run.py FOLDER REQUESTS_JSON OUT_JSON

Each request: ``{"image": path, "prompt": text for the processor, "task": token, "generate": kwargs}``;
the output, one per request: ``{"text": generated text, "result": the post-processed result}``."""
import json
import sys

for name in ("florence",):  # florence is not installed, as far as this process knows
    sys.modules[name] = None

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402


def main(folder, requests_file, out_file):
    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    out = []
    for r in json.loads(open(requests_file).read()):
        image = Image.open(r["image"]).convert("RGB")
        inputs = processor(text=r["prompt"], images=image, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, **r["generate"])
        text = processor.batch_decode(ids, skip_special_tokens=False)[0]
        result = processor.post_process_generation(text, task=r["task"], image_size=image.size)[r["task"]]
        out.append({"text": text, "result": result, "processor": type(processor).__name__,
                    "model": type(model).__name__})
    open(out_file, "w").write(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
