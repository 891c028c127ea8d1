"""compress: train image classifiers under scheduled regularization and report the sparsity it induces."""

__version__ = "0.1.0"
