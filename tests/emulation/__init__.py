"""Run CUDA kernel source on CPU threads under the device's rules (tests only)."""
