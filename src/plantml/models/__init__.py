"""Plain ``nn.Module`` models: forward takes one tensor ``(batch, time, channels)``."""

from plantml.models.autoencoder import ConvAutoencoder, LSTMAutoencoder
from plantml.models.classical import GradientBoostingModel, IsolationForestModel
from plantml.models.cnn import CNNModel
from plantml.models.lstm import LSTMModel
from plantml.models.physics import ThermalModel
from plantml.models.spectral import SpectralModel
from plantml.models.stats import StatsModel
from plantml.models.transformer import TransformerModel

__all__ = [
    "CNNModel",
    "ConvAutoencoder",
    "GradientBoostingModel",
    "IsolationForestModel",
    "LSTMAutoencoder",
    "LSTMModel",
    "SpectralModel",
    "StatsModel",
    "ThermalModel",
    "TransformerModel",
]
