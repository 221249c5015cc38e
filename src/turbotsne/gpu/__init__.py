"""PyTorch versions of the gradient backends (the optional extra "gpu"); see :mod:`.gradients`."""
