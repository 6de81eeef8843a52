"""Training the project's own small models (PyTorch at training time only)."""
