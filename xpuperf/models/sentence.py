"""Sentence embeddings: a BERT encoder, mean pooling over the real tokens and an
optional L2 normalisation (sentence-transformers' Transformer -> Pooling ->
Normalize pipeline, as all-MiniLM-L6-v2 is built)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from xpuperf.zoo import ModelSpec


class SentenceEmbedding(torch.nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> embedding [batch, hidden]."""

    def __init__(self, model: torch.nn.Module, normalize: bool):
        super().__init__()
        self.model = model.eval()
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, return_dict=True).last_hidden_state
        mask = attention_mask[..., None].to(hidden.dtype)
        embedding = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(embedding, dim=-1) if self.normalize else embedding


def sentence_bert(config: Mapping[str, Any], spec: ModelSpec,
                  pretrained: Path | None = None) -> torch.nn.Module:
    """Seeded from ``config``, or loaded from a Hugging Face folder (local files
    only, safetensors only: a pickled checkpoint could run code on load)."""
    from transformers import BertConfig, BertModel

    bert_config = {k: v for k, v in config.items() if k != "normalize"}
    if pretrained is None:
        model = BertModel(BertConfig(**bert_config))
    else:
        # BERT's pooler stays in (unused, so not exported): the folder holds its weights.
        model = BertModel.from_pretrained(str(pretrained), local_files_only=True, use_safetensors=True)
        # The zoo states the architecture; a folder that disagrees is the wrong folder.
        wrong = {k: (v, getattr(model.config, k, None)) for k, v in bert_config.items()
                 if getattr(model.config, k, None) != v}
        if wrong:
            raise ValueError(f"{pretrained}: its config.json disagrees with zoo.yaml's config: "
                             + ", ".join(f"{k} is {got!r}, zoo says {want!r}" for k, (want, got) in wrong.items()))
    return SentenceEmbedding(model, bool(config.get("normalize", False)))
