"""BART with a lean decoding step and a cross-attention cache shared by beams.

A generation step of transformers' ``BartForConditionalGeneration`` goes through three ``forward``
layers, builds a causal and a cross-attention mask and dispatches each attention through
transformers' attention interface. :class:`DecodingBart` is a subclass (built from a BART by
:meth:`DecodingBart.from_bart`, holding its modules, parameters and state dict) whose ``forward``
computes one case directly: one new token per sequence, in inference, with the cross-attention cache its ``generate`` builds from the encoder
output (:class:`~florence.accel.attention.SharedCrossAttentionCache`: projected once per input, not
once per beam). The step calls the same modules and attention function as transformers' path;
out-projections and fc2 take their residual add into the matmul's output pass and fc1 its GELU (one
rounding less in bf16; in fp32 the same token ids, tested). Anything else (training, teacher
forcing, several tokens per step, LoRA-wrapped linears, hidden states or attentions requested) runs
transformers' own forward. Its generate also uses
:func:`~florence.accel.processors.fast_logits_processors` and drops packed bf16 weights before a
batch too large to use them.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from transformers import BartForConditionalGeneration, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.bart.modeling_bart import BartDecoderLayer

from .attention import ATTENTION, SharedCrossAttentionCache, attention, register_attention
from .linear import FastLinear, linear, release_packed_weights_, use_fast_linear_
from .processors import fast_logits_processors
from .replace import take_over

__all__ = ["DecodingBart"]

# forward arguments a decoding step may carry: ignored ones, and ones it serves only when off
_IGNORED_KWARGS = {"cache_position", "return_dict"}
_OFF_KWARGS = {"output_attentions", "output_hidden_states"}


class DecodingBart(BartForConditionalGeneration):
    """``BartForConditionalGeneration`` with :meth:`decode_step` as the forward of decoding steps.
    ``lean_steps = False`` (on the class or an instance) turns the shortcut off."""

    lean_steps = True

    @classmethod
    def from_bart(cls, bart: BartForConditionalGeneration) -> "DecodingBart":
        """A DecodingBart holding ``bart``'s modules, parameters, config and hooks, reading the
        attention function :mod:`florence.accel.attention` registers."""
        new = take_over(bart, cls)
        new.__dict__["_plain_attn_implementation"] = bart.config._attn_implementation
        new.set_attn_implementation(ATTENTION)
        return new

    def __setstate__(self, state):
        register_attention()  # unpickled in another process (a Ray replica): the attention it reads, there too
        super().__setstate__(state)

    def to_bart(self) -> BartForConditionalGeneration:
        """transformers' BART again, holding this one's state, with the attention it had before."""
        bart = take_over(self, BartForConditionalGeneration)
        bart.set_attn_implementation(bart.__dict__.pop("_plain_attn_implementation", "sdpa"))
        return bart

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, **kwargs):
        if (self.lean_steps and input_ids is None and inputs_embeds is None and decoder_attention_mask is None
                and decoder_inputs_embeds is None and labels is None and use_cache is not False
                and decoder_input_ids is not None and decoder_input_ids.shape[1] == 1
                and not self.training and not torch.is_grad_enabled()
                and isinstance(past_key_values, EncoderDecoderCache)
                and type(past_key_values.self_attention_cache) is DynamicCache
                and isinstance(past_key_values.cross_attention_cache, SharedCrossAttentionCache)
                and all(k in _IGNORED_KWARGS or (k in _OFF_KWARGS and not v) for k, v in kwargs.items())
                and encoder_outputs is not None and self._plain_decoder()):
            return self.decode_step(decoder_input_ids, attention_mask, past_key_values)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                               decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                               past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                               decoder_inputs_embeds=decoder_inputs_embeds, labels=labels, use_cache=use_cache,
                               **kwargs)

    def _plain_decoder(self) -> bool:
        """Every decoder layer is transformers' BART layer with plain FastLinears and exact GELU."""
        if self.config.activation_function != "gelu" or type(self.lm_head) is not FastLinear:
            return False
        for layer in self.model.decoder.layers:
            if type(layer) is not BartDecoderLayer:
                return False
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.out_proj,
                        layer.encoder_attn.q_proj, layer.encoder_attn.out_proj, layer.fc1, layer.fc2):
                if type(lin) is not FastLinear:
                    return False
        return True

    def decode_step(self, ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: EncoderDecoderCache) -> Seq2SeqLMOutput:
        """Logits of the next token for ``ids`` (R, 1), the last token of each of R sequences; appends
        this step's self-attention keys and values to ``cache``. ``attention_mask`` (R, L) masks the
        encoder tokens (prompt padding) for the cross-attention."""
        decoder = self.model.decoder
        self_cache, cross = cache.self_attention_cache, cache.cross_attention_cache
        R = ids.shape[0]
        h = decoder.embed_tokens(ids) + decoder.embed_positions(ids, self_cache.get_seq_length())
        h = decoder.layernorm_embedding(h)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (R, 1, 1, L), as transformers' SDPA mask
        for i, layer in enumerate(decoder.layers):
            sa, ca = layer.self_attn, layer.encoder_attn
            shape = (R, 1, -1, sa.head_dim)
            q = sa.q_proj(h).view(shape).transpose(1, 2)
            k, v = self_cache.update(sa.k_proj(h).view(shape).transpose(1, 2), sa.v_proj(h).view(shape).transpose(1, 2), i)
            a = attention(sa, q, k, v, None, scaling=sa.scaling)[0].reshape(R, 1, -1)
            h = layer.self_attn_layer_norm(_linear(sa.out_proj, a, residual=h))
            q = ca.q_proj(h).view(shape).transpose(1, 2)
            kv = cross.layers[i]
            a = attention(ca, q, kv.keys, kv.values, mask, scaling=ca.scaling)[0].reshape(R, 1, -1)
            h = layer.encoder_attn_layer_norm(_linear(ca.out_proj, a, residual=h))
            h = layer.final_layer_norm(_linear(layer.fc2, _linear(layer.fc1, h, act="gelu"), residual=h))
        logits = self.lm_head(h) + self.final_logits_bias
        return Seq2SeqLMOutput(logits=logits, past_key_values=cache)

    def _get_logits_processor(self, *args, **kwargs):
        return fast_logits_processors(super()._get_logits_processor(*args, **kwargs))

    @torch.no_grad()
    def generate(self, inputs=None, generation_config=None, encoder_outputs=None, **kwargs):
        """transformers' generate; from ``encoder_outputs``, with the shared cross-attention cache.

        Every cross-attention then reads the cache; the decoder uses the encoder states only for
        their batch size, length and dtype (the cross-attention mask), so generate gets a zero-width
        view of them, whose per-beam copy costs nothing."""
        config = copy.deepcopy(generation_config or self.generation_config)
        kwargs = config.update(**kwargs)  # what is left: logits_processor, attention_mask, ...
        if encoder_outputs is not None and inputs is None:
            hidden = encoder_outputs.last_hidden_state
            # above the packing limit the packed bf16 weights of small batches are dead weight
            release_packed_weights_(self, len(hidden) * max(config.num_beams or 1, config.num_return_sequences or 1))
            if (config.use_cache is not False and getattr(config, "penalty_alpha", None) is None
                    and kwargs.get("assistant_model") is None and kwargs.get("past_key_values") is None):
                kwargs["past_key_values"] = self.cross_attention_cache(hidden)
                hidden = hidden[..., :0]
            encoder_outputs = BaseModelOutput(last_hidden_state=hidden)  # generate expands it in place
        return super().generate(inputs, generation_config=config, encoder_outputs=encoder_outputs, **kwargs)

    @torch.no_grad()
    def cross_attention_cache(self, encoder_hidden_states: torch.Tensor) -> EncoderDecoderCache:
        """A decoding cache holding every decoder layer's cross-attention keys and values, projected
        once per input and shared by its beams."""
        B, L, _ = encoder_hidden_states.shape
        cross = SharedCrossAttentionCache()
        for i, layer in enumerate(self.model.decoder.layers):
            attn = layer.encoder_attn
            k = attn.k_proj(encoder_hidden_states).view(B, L, -1, attn.head_dim).transpose(1, 2)  # (B, heads, L, hd)
            v = attn.v_proj(encoder_hidden_states).view(B, L, -1, attn.head_dim).transpose(1, 2)
            cross.update(k, v, i)
        return EncoderDecoderCache(DynamicCache(), cross)

    def resize_token_embeddings(self, *args, **kwargs):
        out = super().resize_token_embeddings(*args, **kwargs)
        use_fast_linear_(self)  # a resized lm_head is a new nn.Linear
        return out


def _linear(module: nn.Linear, x: torch.Tensor, act: str = "none", residual: torch.Tensor | None = None):
    return linear(x, module.weight, module.bias, act=act, module=module, residual=residual)
