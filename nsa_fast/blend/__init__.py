"""Executors of plans: OpenCV on the CPU (the reference) and the batched solver (CPU or CUDA)."""
