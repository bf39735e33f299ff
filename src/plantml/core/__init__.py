"""plantml.core: the preprocessing rules that training and the edge device share.

One implementation, imported by both sides: ``plantml.data`` (training, with
pandas and torch around it) and ``plantml.edge`` (the device: numpy and
onnxruntime only). Nothing here imports torch, pandas, Lightning or Hydra.

- :mod:`plantml.core.normalize`: ``(x - offset[c]) / scale[c]`` per operating condition.
- :mod:`plantml.core.conditions`: a row's operating-condition code (column value or
  nearest cluster centre of the settings).
- :mod:`plantml.core.windows`: which rows end a window (runs, restarts at gaps, the
  stride convention) and the strided gather of windows.
- :mod:`plantml.core.valid_range`: the range of values training accepted per column
  (the ``sanity`` / ``clip`` bounds) and how a value outside it is found or clamped.
"""
