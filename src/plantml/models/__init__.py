"""Plain ``nn.Module`` models: forward takes one tensor ``(batch, time, channels)``."""

from plantml.models.lstm import LSTMModel

__all__ = ["LSTMModel"]
