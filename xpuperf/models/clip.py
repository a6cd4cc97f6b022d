"""CLIP on transformers' classes (seeded initialisation from a config): the text
encoder alone (Stable Diffusion's), and a dual encoder that scores images against
text prompts (ByteMLPerf's videobert-onnx)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from xpuperf.zoo import ModelSpec


class TextEncoder(torch.nn.Module):
    """input_ids [batch, seq] -> (last_hidden_state, pooler_output)."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel
        self.model = CLIPTextModel(CLIPTextConfig(**config))

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The zoo feeds int32 ids (as ByteMLPerf's model takes); embeddings index with int64.
        out = self.model(input_ids=input_ids.long(), return_dict=True)
        return out.last_hidden_state, out.pooler_output


class DualEncoder(torch.nn.Module):
    """(image [batch, 3, H, W], text [prompts, seq]) -> logits [batch, prompts]:
    CLIP's scaled cosine similarity of each image with each prompt, so the argmax
    over prompts is a zero-shot classification. The prompts have no batch axis:
    the same ones score every image of a batch, as ByteMLPerf feeds them."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        from transformers import CLIPConfig, CLIPModel
        self.model = CLIPModel(CLIPConfig(**config))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=text, pixel_values=image, return_dict=True).logits_per_image


def text_encoder(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    return TextEncoder(config)


def dual_encoder(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    return DualEncoder(config)
