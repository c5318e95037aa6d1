"""Florence-2-base architecture: DaViT (128..1024, depths 1/1/9/1, ~90M) + BART 6+6 d768 (~140M),
vocab 51289. Random weights; fine-tuning configs load a checkpoint on top (either published layout).
"""
from florence.models import Florence2ForConditionalGeneration

model = dict(type=Florence2ForConditionalGeneration, preset="base")
