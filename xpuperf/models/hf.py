"""Builders on transformers' model classes (seeded initialisation from a config)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from xpuperf.zoo import ModelSpec


class NamedIO(torch.nn.Module):
    """Calls a Hugging Face model with the zoo's input names as keywords and
    returns the zoo's outputs as a tuple, in order, so tracing and ONNX export
    see plain tensors."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, post: Any = None):
        super().__init__()
        self.model = model.eval()
        self.input_names = [t.name for t in spec.inputs]
        self.post = post or (lambda out: tuple(out[t.name] for t in spec.outputs))

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, args)), return_dict=True)
        return self.post(out)


def bert_qa(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import BertConfig, BertForQuestionAnswering
    return NamedIO(BertForQuestionAnswering(BertConfig(**config)), spec)


def resnet(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification
    # ByteMLPerf's resnet50 ends in a softmax; so does ours, for the same outputs.
    return NamedIO(ResNetForImageClassification(ResNetConfig(**config)), spec,
                   post=lambda out: (torch.softmax(out.logits, dim=-1),))


def albert_qa(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import AlbertConfig, AlbertForQuestionAnswering
    return NamedIO(AlbertForQuestionAnswering(AlbertConfig(**config)), spec)


def roberta_qa(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import RobertaConfig, RobertaForQuestionAnswering
    return NamedIO(RobertaForQuestionAnswering(RobertaConfig(**config)), spec)


def deberta_qa(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import DebertaConfig, DebertaForQuestionAnswering
    return NamedIO(DebertaForQuestionAnswering(DebertaConfig(**config)), spec)


def swin(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import SwinConfig, SwinForImageClassification
    return NamedIO(SwinForImageClassification(SwinConfig(**config)), spec)
