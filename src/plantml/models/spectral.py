"""A spectral front end followed by a sequence backbone, for raw vibration windows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from plantml.errors import ConfigError
from plantml.features.spectral import SpectralFrontEnd
from plantml.models.cnn import CNNModel
from plantml.models.lstm import LSTMModel
from plantml.models.transformer import TransformerModel


class SpectralModel(nn.Module):
    """Raw window → spectrogram frames → backbone → outputs.

    Input ``(batch, time, channels)`` float (raw samples, e.g. 2048 of
    vibration); the :class:`~plantml.features.spectral.SpectralFrontEnd` turns
    it into ``(batch, frames, channels * bins)``, which the backbone reads as a
    (shorter, wider) sequence; output ``(batch, out_features)``. The front end
    is part of the model, so the exported ONNX graph takes the raw window.

    Args:
        in_features: channels of the raw window.
        out_features: outputs per window.
        front_end: keyword arguments of ``SpectralFrontEnd`` (``n_fft``,
            ``hop_length``, ``kind``, ``n_mels``, ``sample_rate``, ``log``,
            ``power``, ``n_bands``, ``stft``).
        backbone: ``cnn``, ``transformer`` or ``lstm``.
        backbone_kwargs: keyword arguments of the backbone (its ``in_features``
            is the front end's ``channels * bins``).
    """

    BACKBONES: ClassVar[dict[str, type[nn.Module]]] = {
        "cnn": CNNModel,
        "transformer": TransformerModel,
        "lstm": LSTMModel,
    }

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        front_end: Mapping[str, Any] | None = None,
        backbone: str = "cnn",
        backbone_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if backbone not in self.BACKBONES:
            raise ConfigError(
                f"unknown model.backbone {backbone!r}; use one of {', '.join(self.BACKBONES)}"
            )
        kwargs = dict(backbone_kwargs or {})
        for key in ("in_features", "out_features"):
            if key in kwargs:
                raise ConfigError(
                    f"model.backbone_kwargs.{key} is set by the model; remove it from the config"
                )
        try:
            self.front_end = SpectralFrontEnd(in_features, **dict(front_end or {}))
            self.backbone = self.BACKBONES[backbone](
                in_features=self.front_end.out_features, out_features=out_features, **kwargs
            )
        except TypeError as exc:  # an unknown keyword
            raise ConfigError(
                f"model.front_end or model.backbone_kwargs has an option the {backbone} model "
                f"does not take: {exc}"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, channels)`` → ``(batch, out_features)``."""
        return self.backbone(self.front_end(x))
