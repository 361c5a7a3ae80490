"""hplan: hierarchical planning with learned JEPA world models, in JAX."""

__version__ = "0.1.0"
