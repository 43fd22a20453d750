"""n3net: Neural Nearest Neighbors Networks (Plötz & Roth, NeurIPS 2018) in pure PyTorch."""

__version__ = "0.1.0"
