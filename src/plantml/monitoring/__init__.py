"""plantml.monitoring: is the model in production still seeing what it was trained on?

Two halves:

* **Device side** (numpy only, no torch, pandas, hydra or scipy): the reference
  profile every bundle carries (:mod:`~plantml.monitoring.profile`), the
  mergeable sketches an edge agent updates row by row
  (:mod:`~plantml.monitoring.sketch`), and the drift statistics computed from
  them (:mod:`~plantml.monitoring.stats`, :mod:`~plantml.monitoring.drift`).
  The agent does::

      from plantml.monitoring.profile import load_profile
      from plantml.monitoring.sketch import ProfileSketch

      sketch = ProfileSketch.from_reference(load_profile(bundle))
      sketch.update(x_raw, condition_codes)              # rows (n, C) as received
      sketch.update_outputs(predictions, codes, alarms)  # the model's outputs
      summary["sketch"] = sketch.to_dict()               # JSON, bounded size
      sketch.reset()                                     # next period

* **Cloud side** (numpy, scipy, SQLAlchemy, matplotlib): calibrated tests and
  alert rules (:mod:`~plantml.monitoring.sequential`, :mod:`~plantml.monitoring.rules`),
  delayed-label performance (:mod:`~plantml.monitoring.labels`), label-free
  estimates (:mod:`~plantml.monitoring.estimate`), the store
  (:mod:`~plantml.monitoring.store`), ingest, reports and the ``plantml-ingest``
  and ``plantml-monitor`` commands.

This module imports nothing, so importing a device-side module stays light.
"""
