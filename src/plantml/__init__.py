"""plantml: machine-learning models of industrial equipment, from research to the plant floor."""

__version__ = "0.1.0"
