"""Florence-2 tiny (4M parameters) trained from scratch on the built-in synthetic scenes, all 15
tasks at once, then evaluated on held-out scenes: the project's main job.

What it trains: DaViT 32-256 (8x8 windows) + BART 2+2 layers of width 128 with a 600-merge BPE
tokenizer trained offline on the dataset's vocabulary; 128x128 scenes of coloured shapes and printed
words (``florence.data.SyntheticScenes``), each annotated for 2 of the 15 tasks (mixed by
``task_weights``) and encoded once for both; bf16 autocast where the CPU has native bf16
(``dtype="auto"``; float32 on AVX2-only CPUs); 2200 steps of 16 scenes x 2 tasks. Two training-only
heads on the image tokens (pixel reconstruction, object class + box) and a coordinate-aware init of
the location tokens make the location tasks learnable in this budget (README "Main job results").
Expected on held-out scenes (issue targets): OD mAP@0.5 >= 0.5, referring/grounding Acc@0.5 >= 0.6,
OCR word F1 >= 0.8, caption CIDEr >= 1.0, RES mIoU >= 0.5. Reached (50 scenes per task, seed 0 /
seed 1): OD mAP@0.5 0.84 / 0.82, open-vocabulary detection Acc@0.5 0.94 / 0.86, phrase grounding
Recall@1 0.87 / 0.93, OCR word F1 0.95 / 0.89, caption CIDEr 6.9 / 7.9, RES mIoU 0.66 / 0.63.
Time: 13 min 26 s / 14 min 7 s wall in float32 on a 2-core AVX2-only CPU, peak memory 1.4 GB; 11 min
14 s in bf16 on a 2-core AVX-512 Xeon (seed 0 there: OD mAP@0.5 0.87, OCR word F1 0.89, RES mIoU 0.68).
Command: .venv/bin/florence train configs/florence2/florence2_tiny_synthetic.py
"""
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.optim import CosineAnnealingLR, LinearLR
from torch.optim import AdamW

from florence.data import MultiTaskDataset, SyntheticScenes
from florence.engine import AutocastOptimWrapper, Florence2Model, TrainLoop
from florence.evaluation.task_metric import TaskMetric

with read_base():
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.schedules.adamw_cosine import *  # noqa: F401,F403

image_size = 128
text_size = 1 / 4  # 32 px words: at 21 px OCR word F1 stayed near 0.6
max_iters = 2_200
warmup_iters = 100
# sampling weight of each task: the captions are learned long before the location tasks and OCR
task_weights = {"<CAPTION>": 0.25, "<DETAILED_CAPTION>": 0.25, "<MORE_DETAILED_CAPTION>": 0.25, "<OCR>": 2.5,
                "<OCR_WITH_REGION>": 1.5, "<OD>": 2.5, "<DENSE_REGION_CAPTION>": 1, "<REGION_PROPOSAL>": 1,
                "<CAPTION_TO_PHRASE_GROUNDING>": 1.5, "<REFERRING_EXPRESSION_SEGMENTATION>": 2,
                "<REGION_TO_SEGMENTATION>": 1, "<OPEN_VOCABULARY_DETECTION>": 1.5, "<REGION_TO_CATEGORY>": 0.25,
                "<REGION_TO_DESCRIPTION>": 0.25, "<REGION_TO_OCR>": 1}

model = dict(
    type=Florence2Model,
    # init std 1/sqrt(d_model) instead of BART's 0.02 (meant for width 768+): at width 128 the
    # attention logits start ~0 and copying a prompt's box took > 300 steps instead of ~150
    # 8x8 attention windows: the 32x32 first-stage grid of a 128 px image splits into whole windows
    model=dict(preset="tiny", init_std=0.088, vision=dict(window_size=8)),
    # every merge of the dataset's words: each printed word and category word is one token
    tokenizer=dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=600),
    location_init="coordinate",
    # without it the randomly initialised tower's features are unreadable when the decoder first
    # looks for them and the text loss flattens them: the model never uses the image
    reconstruction=dict(weight=1.0, cell=8),
    # each image token says which object lies under it and that object's box: the decoder then
    # only has to find the token and copy its numbers
    objects=dict(classes="florence.data.synthetic:category_names"),
    generation=dict(num_beams=1, max_new_tokens=80),
    max_target_tokens=128,
)

# each scene is annotated for 2 different tasks and the tower encodes it once for both (the tower is
# most of a step's cost): 32k scenes, 64k samples. 4 tasks per scene (16k scenes) missed OCR
# (word F1 0.21) and OD (README "Main job results")
tasks_per_image = 2
train_dataloader = dict(
    batch_size=16, num_workers=0,  # 16 scenes x 2 tasks = 32 sequences per step
    sampler=dict(type=InfiniteSampler, shuffle=True),
    dataset=dict(type=MultiTaskDataset, image_size=image_size,
                 datasets=[dict(type=SyntheticScenes, seed=0, length=1_000_000, image_size=image_size, text_size=text_size,
                                task_weights=task_weights, tasks_per_image=tasks_per_image)]),
)
val_dataloader = dict(
    batch_size=32, num_workers=0,
    sampler=dict(type=DefaultSampler, shuffle=False),
    dataset=dict(type=MultiTaskDataset, image_size=image_size,
                 datasets=[dict(type=SyntheticScenes, seed=12345, length=750, image_size=image_size, text_size=text_size,
                                cycle_tasks=True)]),  # 50 held-out scenes per task
)
test_dataloader = val_dataloader
val_evaluator = dict(type=TaskMetric)
test_evaluator = val_evaluator

# lr 1e-3: at 2e-3 the encoder collapsed to a constant output early and the decoder never
# learned to read it; no weight decay on norms and biases (they would decay towards that collapse)
optim_wrapper = dict(type=AutocastOptimWrapper, dtype="auto",
                     optimizer=dict(type=AdamW, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01, fused=True),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type=LinearLR, start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, by_epoch=False, begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters,
         eta_min=1e-5),
]
train_cfg = dict(type=TrainLoop, max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.update(interval=250, max_keep_ckpts=2)  # noqa: F405
