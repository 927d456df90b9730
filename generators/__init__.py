"""Synthetic and augmented training data. Importing this package is cheap."""
