"""The test bed's caption path: a word-level tokenizer over the task's words and a tiny frozen T5.

``OpenSoraPipeline`` lower-cases and cleans a prompt, appends ``" aesthetic score: 6.5."`` and
tokenizes it to 300 tokens; the tokenizer keeps the task's words, maps every other word, number
and punctuation mark to ``<unk>`` and ends the caption with ``</s>``, as T5's does. The encoder is
a two-layer ``transformers`` T5 whose random initial weights are kept frozen: they are stored with
the transformer's, so the caption embeddings the transformer learned from never change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .task import VOCABULARY

SPECIALS = ("<pad>", "</s>", "<unk>")
TEXT_DIM = 64


def testbed_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast``: one id per task word, ``<unk>`` for anything else."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIALS, *VOCABULARY])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def testbed_text_encoder(seed: int = 0) -> nn.Module:
    """A two-layer T5 encoder (d_model 64) with ``seed``'s random weights, in eval mode, frozen."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(SPECIALS) + len(VOCABULARY),
        d_model=TEXT_DIM,
        d_kv=16,
        d_ff=2 * TEXT_DIM,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    encoder = T5EncoderModel(config).eval()
    encoder.requires_grad_(False)
    return encoder
