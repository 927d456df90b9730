"""What the system knows: teachers, the text embedder, vector indexes, data pools, auto-labeling, devices.

Importing this package is cheap: torch, faiss and transformers load inside the functions that use them.
"""
