"""Model creation: dataset preparation, training, evaluation and export.

Nothing is imported here on purpose: `deepfake --help` must not load torch.
"""
