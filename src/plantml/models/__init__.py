"""Plain ``nn.Module`` models: forward takes one tensor ``(batch, time, channels)``."""

from plantml.models.cnn import CNNModel
from plantml.models.lstm import LSTMModel
from plantml.models.spectral import SpectralModel
from plantml.models.transformer import TransformerModel

__all__ = ["CNNModel", "LSTMModel", "SpectralModel", "TransformerModel"]
