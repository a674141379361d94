"""ebreg: probabilistic regression with energy-based models and learned proposals."""
__version__ = "0.1.0"
