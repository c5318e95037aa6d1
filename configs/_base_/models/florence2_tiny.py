"""Florence-2 tiny: ~4M parameters with a small offline tokenizer (vocab_size ~1.3k); DaViT dims
(32, 64, 128, 256), BART 2+2 layers of width 128. For tests and the CPU demo; trains from scratch.

Build: ``florence.registry.MODELS.build(Config.fromfile(this_file).model)``.
"""
from florence.models import Florence2ForConditionalGeneration

model = dict(type=Florence2ForConditionalGeneration, preset="tiny", vocab_size=1324)  # vocab = tokenizer size
