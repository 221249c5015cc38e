"""The PyTorch backend: the pipeline's arithmetic on torch tensors, on a CUDA device or the CPU.

The modules here are the torch engine's operations (:class:`turbotsne.engine.TorchEngine`
calls them): exact kNN by tiled brute force (:mod:`.neighbors`), the perplexity search
for all points at once and the symmetrisation as a sparse tensor (:mod:`.affinity`), PCA
(:mod:`.initialization`), the optimiser's step (:mod:`.optimizer`) and the exact and
FFT-interpolation gradients (:mod:`.gradients`), in float32 on the device. Importing them
imports torch (the optional ``gpu`` extra); ``import turbotsne`` never does. The embedding
objects keep their coordinates as NumPy arrays between ``optimize`` calls.
"""
