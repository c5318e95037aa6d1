"""florence: Florence-2 as a framework (see README.md)."""
from setuptools import find_packages, setup

# torch/torchvision are pinned to the builds this project is tested with: timm (DaViT) imports
# torchvision, and PyPI's torchvision only works beside the matching torch.
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "timm==1.0.31",
    "transformers==5.23.0",
    "tokenizers>=0.22,<0.24",
    "safetensors>=0.5",
    "huggingface_hub>=1.0",
    "mmengine==0.10.7",
    "pluggy>=1.5",
    "pillow>=10",
    "tqdm>=4.60",
    "peft==0.21.2",  # LoRA fine-tuning (adapters injected into any module, validated by us)
    # evaluation: the field's reference implementations
    "pycocotools>=2.0.8",
    "pycocoevalcap==1.2",
    "rapidfuzz>=3.0",
    "numpy>=1.26",
    "webdataset==1.0.2",  # tar shards that stream (florence.data.shards)
]
EXTRAS = {
    # ZeRO through mmengine's FlexibleRunner (florence.engine.deepspeed); ninja builds its ops on first use
    "deepspeed": ["deepspeed==0.19.8", "ninja"],
    # transfer to detection / segmentation (florence.downstream). mmdet 3.3 and mmseg 1.2 need mmcv < 2.2
    # with compiled ops; PyPI has only mmcv's source, which tools/install.sh builds once into a wheel
    # cache. mmseg imports ftfy without declaring it.
    "downstream": ["mmcv==2.1.0", "mmdet==3.3.0", "mmsegmentation==1.2.2", "ftfy>=6"],
    # ONNX export and the onnxruntime backend (florence.deploy.onnx / .runtime)
    # (onnx-ir: onnxruntime's weight-only int8 quantizer imports it without declaring it)
    "onnx": ["onnx==1.23.2", "onnxruntime==1.32.0", "onnx-ir==1.1.0"],
    # florence serve (florence.deploy.serve): LitServe (FastAPI + uvicorn) does the dynamic batching and
    # the model workers; pinned, as florence's front submits to its queue; multipart uploads; /metrics
    "serve": ["litserve==0.2.19", "python-multipart>=0.0.9", "prometheus-client>=0.20"],
    # labelling on a cluster (florence label --engine ray, florence.label.ray_engine): Ray Data's streaming
    # stages, actor pools of model replicas and task retries
    "ray": ["ray[data]==2.60.0"],
    # the documentation site (docs/, mkdocs.yml): mkdocs build --strict, API pages from the docstrings
    "docs": ["mkdocs==1.6.1", "mkdocs-material==9.8.2", "mkdocstrings==1.0.8", "mkdocstrings-python==2.0.11"],
    # scikit-image ships the real photographs the preprocessing tests run on
    "test": ["pytest>=8", "scikit-image>=0.24", "hypothesis>=6.100", "jiwer>=3.0", "anls==0.0.2",
             "faster-coco-eval>=1.6", "supervision>=0.25",
             "psutil>=5.9",  # the kill tests stop whole process trees
             "requests>=2.31", "playwright>=1.50"],  # the server's clients; its page in Debian's Chromium
}

setup(
    # the import name is `florence`; the distribution `florence` on PyPI is an unrelated project
    name="florence-vision",
    version="0.1.0",
    description="Florence-2 as a framework: one seq2seq vision model, tasks as plugins, mmengine training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["florence", "florence.*"]),
    package_data={"florence.deploy.serve": ["page.html"]},  # florence serve's page
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        # built-in tasks and metrics load through the same entry points as third-party ones
        "florence.tasks": [f"{m} = florence.tasks.{m}" for m in
                           ("captioning", "ocr", "detection", "grounding", "segmentation", "region", "vqa")],
        "florence.metrics": ["metrics = florence.evaluation.functions"],
        "console_scripts": ["florence = florence.cli:main"],
    },
    license="MIT",
)
