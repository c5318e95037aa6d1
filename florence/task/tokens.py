"""The vocabulary the registered tasks need, added to a tokenizer and a model."""
from __future__ import annotations

from .registry import list_tasks

__all__ = ["add_task_tokens"]


def add_task_tokens(model, tokenizer, tasks=None) -> list[str]:
    """Add the special tokens the registered tasks need to the tokenizer, and grow the model's
    embeddings if the vocabulary outgrows them. Returns the tokens added."""
    vocab = tokenizer.get_vocab()
    needed = [t for task in (tasks or list_tasks()) for t in task.special_tokens if t not in vocab]
    needed = list(dict.fromkeys(needed))
    if needed:
        tokenizer.add_special_tokens({"additional_special_tokens": needed}, replace_extra_special_tokens=False)
    if len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    return needed
