"""Tandem's model core: a from-scratch Llama-architecture transformer in plain PyTorch.

Imports nothing of Tandem and nothing of Django; `transformers` is used only by tests and
benchmarks as the reference.
"""
