"""Stable Diffusion's networks on diffusers' classes (seeded initialisation from a
config), cut the way diffusers' own ONNX conversion cuts them: the UNet's noise
prediction, the VAE encoder up to its latent, the VAE decoder from a latent."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from xpuperf.zoo import ModelSpec


class UNet(torch.nn.Module):
    """(sample, timestep, encoder_hidden_states) -> out_sample, the predicted noise."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        from diffusers import UNet2DConditionModel
        self.unet = UNet2DConditionModel(**config)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class VaeEncoder(torch.nn.Module):
    """sample (an image in [-1, 1]) -> latent_sample."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        from diffusers import AutoencoderKL
        self.vae = AutoencoderKL(**config)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        # The posterior's mode, not a draw from it as diffusers' exporter takes: a
        # random draw in the graph would make every run differ from the reference.
        return self.vae.encode(sample, return_dict=False)[0].mode()


class VaeDecoder(torch.nn.Module):
    """latent_sample -> sample (the decoded image)."""

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        from diffusers import AutoencoderKL
        self.vae = AutoencoderKL(**config)

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample, return_dict=False)[0]


def unet(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    return UNet(config)


def vae_encoder(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    return VaeEncoder(config)


def vae_decoder(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    return VaeDecoder(config)
