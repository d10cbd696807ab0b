"""The modes a served model samples in (SERVING_SAMPLING_MODE), and preparing a model for one.

- reference: the weights as loaded (float32 packed for oneDNN on a CPU, bfloat16 on a GPU),
  every step eager: what the faster modes are checked against.
- int8 (CPU): int8 weight-only linear layers, each block's one-token step one C++ call
  (`modelcore.cpu_sampling`).
- cuda-graphs (GPU): the one-token decoding step compiled and replayed as a CUDA graph
  (`modelcore.compiled_decode`).
- auto: the fastest mode that keeps the model's answers: int8 on a CPU (reference on one without
  AVX2), cuda-graphs on a GPU. (On a CPU, compiling int8's step with torch.compile was slower
  than the C++ block step, 3.1 against 2.1 s for a SmolLM2 pair of 256 tokens, after compiling
  for 73 s.) How close int8 stays to float32 is pinned on the real SmolLM2 weights by
  tests/modelcore/test_sampling_modes.py.

The names are read by Tandem's settings, which must not load PyTorch, so this module imports
the sampling code only where it is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelcore.compiled_decode import CompiledDecoding
    from modelcore.model import LlamaLM

SAMPLING_MODES = ("auto", "reference", "int8", "cuda-graphs")
# The device type each explicit mode runs on (reference runs on either).
MODE_DEVICES = {"int8": "cpu", "cuda-graphs": "cuda"}


def resolve_mode(mode: str, device_type: str) -> str:
    """The explicit mode `mode` means on a device of `device_type`; ValueError if it cannot
    run there. Only "auto" on a CPU loads PyTorch (to ask the CPU for AVX2)."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}: expected one of {SAMPLING_MODES}")
    if mode == "auto":
        if device_type == "cpu":
            from modelcore.cpu_sampling import int8_supported

            return "int8" if int8_supported() else "reference"
        return "cuda-graphs" if device_type == "cuda" else "reference"
    needed = MODE_DEVICES.get(mode)
    if needed is not None and needed != device_type:
        raise ValueError(f"sampling mode {mode!r} runs on {needed}, not on {device_type}")
    return mode


def prepare_for_sampling(model: LlamaLM, mode: str) -> LlamaLM | CompiledDecoding:
    """`model` (in eval mode, on its serving device) made ready to sample in `mode`, in place:
    what to pass to `modelcore.sampling.generate`. A compiled mode is compiled here, by a
    short warm-up, rather than at the first real prompt."""
    from modelcore.compiled_decode import CompiledDecoding
    from modelcore.cpu_sampling import prepare_for_cpu_sampling

    device_type = model.decoder.embed.weight.device.type
    mode = resolve_mode(mode, device_type)
    if mode == "cuda-graphs":
        return _warmed_up(CompiledDecoding(model))
    if device_type != "cpu":
        return model
    return prepare_for_cpu_sampling(model, int8=mode == "int8")


def _warmed_up(policy: CompiledDecoding) -> CompiledDecoding:
    from modelcore.sampling import CACHE_COLUMNS_STEP, SamplingParams, generate

    # The shapes the generate worker decodes at: a pair from one model (2 rows) or one response
    # from each of two (1 row), and KV caches of more than one size (modelcore.sampling rounds
    # them up to CACHE_COLUMNS_STEP). A second value of a dimension makes torch.compile compile
    # the step for any value of it, so later prompts replay what is compiled here.
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    for rows, length in ((2, 8), (1, 8), (2, CACHE_COLUMNS_STEP + 8)):
        generate(policy, [[0] * length] * rows, params, pad_id=0)  # type: ignore[arg-type]
    return policy
