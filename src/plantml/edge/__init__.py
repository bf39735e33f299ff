"""plantml.edge: run an exported bundle with numpy and onnxruntime only (no torch).

Batch::

    from plantml.edge import EdgeModel
    from plantml.edge.io import read_table, write_csv

    model = EdgeModel("export/my_bundle")          # verifies every file's SHA-256
    columns, errors = model.predict_rows(read_table("today.csv"))
    write_csv("predictions.csv", columns)          # asset, time, condition, <output>, alarm

Streaming::

    from plantml.edge import StreamingPredictor

    stream = StreamingPredictor("export/my_bundle")
    for row in rows:                                # dicts: column -> value
        prediction = stream.feed(row)               # None until the asset's window is due
        if prediction and prediction.alarm:
            print(prediction.asset, prediction.time, prediction.value)
"""

from plantml.edge.bundle import Bundle, BundleError, load_bundle
from plantml.edge.preprocess import InputError, RowError
from plantml.edge.runtime import EdgeModel
from plantml.edge.streaming import Prediction, StreamingPredictor

__all__ = [
    "Bundle",
    "BundleError",
    "EdgeModel",
    "InputError",
    "Prediction",
    "RowError",
    "StreamingPredictor",
    "load_bundle",
]
