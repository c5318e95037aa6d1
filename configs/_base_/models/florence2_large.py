"""Florence-2-large architecture: DaViT (256..2048, ~360M) + BART 12+12 d1024 (~410M), vocab 51289,
4096 text positions (the current published config.json). Random weights.
"""
from florence.models import Florence2ForConditionalGeneration

model = dict(type=Florence2ForConditionalGeneration, preset="large")
