"""TSDAE loss built from the encoder in memory, with a fallback decoder for architectures that have none."""

from __future__ import annotations

import copy
import logging

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss
from sentence_transformers.sentence_transformer.losses.denoising_auto_encoder import _tie_encoder_decoder_weights
from torch import nn
from transformers import AutoModelForCausalLM, BertConfig, BertLMHeadModel

logger = logging.getLogger(__name__)


class DenoisingLoss(DenoisingAutoEncoderLoss):
    """sentence-transformers' ``DenoisingAutoEncoderLoss`` (its ``forward`` is reused as is), built differently.

    The upstream constructor reloads the decoder from the checkpoint's path and ties the encoder to
    *those* weights, which would silently undo any earlier training of the encoder in memory; here
    the decoder is built from the encoder's config and initialised from the encoder's current
    weights before tying. Architectures without a causal-LM class in ``transformers`` (MPNet, for
    one) get an untied BERT decoder of the same hidden size over the encoder's own vocabulary.

    The encoder is kept as ``model`` (upstream: ``encoder``) so that the trainer swaps in the
    DDP-wrapped model, whose forward pass synchronises the gradients.

    Inputs: pairs (damaged text, original text); no labels.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        nn.Module.__init__(self)  # the parent's __init__ loads a decoder from disk: not wanted here
        self.model = model
        self.tokenizer_encoder = model.tokenizer
        self.tokenizer_decoder = model.tokenizer
        self.need_retokenization = False
        encoder = model.transformers_model
        decoder_config = copy.deepcopy(encoder.config)
        decoder_config.is_decoder = True
        decoder_config.add_cross_attention = True
        try:
            self.decoder = AutoModelForCausalLM.from_config(decoder_config)
        except ValueError:
            self.decoder = _fallback_decoder(encoder.config, model.tokenizer)
            self.tied = False
            logger.warning(
                "%s has no decoder class in transformers; phase 1 uses an untied BERT decoder of hidden size %d instead.",
                type(encoder).__name__,
                encoder.config.hidden_size,
            )
        else:
            decoder_base = getattr(self.decoder, self.decoder.base_model_prefix)
            decoder_base.load_state_dict(encoder.state_dict(), strict=False)
            _tie_encoder_decoder_weights(encoder, decoder_base)
            self.tied = True
        if self.tokenizer_decoder.pad_token_id is None:
            raise ValueError("the encoder's tokenizer has no padding token, which the reconstruction loss needs.")

    @property
    def encoder(self) -> nn.Module:
        return self.model


def _fallback_decoder(config, tokenizer) -> BertLMHeadModel:
    fallback = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=getattr(config, "num_hidden_layers", 6),
        num_attention_heads=getattr(config, "num_attention_heads", 12),
        intermediate_size=getattr(config, "intermediate_size", 4 * config.hidden_size),
        max_position_embeddings=max(getattr(config, "max_position_embeddings", 512), 512),
        pad_token_id=tokenizer.pad_token_id,
        is_decoder=True,
        add_cross_attention=True,
    )
    return BertLMHeadModel(fallback)
