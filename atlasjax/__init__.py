"""atlasjax: feature visualization and activation atlases in JAX."""

__version__ = "0.1.0"
