"""Training tokens/s of modelcore's LlamaLM against transformers' LlamaForCausalLM, same run.

One step is forward, next-token cross-entropy, backward and an AdamW step. Both models have the
SmolLM2-135M shape, the same random weights (ours, copied into transformers through
`state_dict_to_hf`), the same batch, the same loss code and the same optimizer
(`modelcore.optim.make_adamw`), so the model code is the only difference.

    python benchmarks/train_step.py                                  # CPU, float32
    python benchmarks/train_step.py --device cuda --dtype bfloat16 --compile
    python benchmarks/train_step.py --device cuda --dtype bfloat16 --compile \
        --model llama2-7b --override n_layers=4 --batch 8 --seq-len 2048

`--compile` adds a third contender, a copy of our model with each decoder block compiled, and
reports the compile time and after how many steps it pays for itself. The last line of stdout
is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from _common import (
    DTYPES,
    add_common_args,
    emit,
    environment,
    interleaved,
    keep_freed_memory,
    log,
    rate,
    timed,
)

from modelcore.config import ModelConfig
from modelcore.hf_interop import config_to_hf, state_dict_to_hf
from modelcore.model import LlamaLM
from modelcore.optim import estimate_mfu, flops_per_token, make_adamw

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def hf_copy(model: LlamaLM, dtype: torch.dtype) -> transformers.LlamaForCausalLM:
    """A transformers model with our model's config and weights."""
    config = transformers.LlamaConfig(
        **config_to_hf(model.config, bos_id=None, eos_id=None, pad_id=None, dtype=dtype),
        attn_implementation="sdpa",
    )
    hf = transformers.LlamaForCausalLM(config)
    # A tied LM head is the embedding; state_dict_to_hf leaves the duplicate out.
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(model), strict=False)
    expected_missing = ["lm_head.weight"] if model.config.tie_embeddings else []
    if missing != expected_missing or unexpected:
        raise RuntimeError(f"weights do not map onto transformers: {missing=}, {unexpected=}")
    return hf.to(next(model.parameters()).device, dtype)


def step_fn(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
) -> Callable[[], torch.Tensor]:
    """One training step on `batch` [B, T+1]; returns the loss before the update."""
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step() -> torch.Tensor:
        logits = logits_of(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def parse_overrides(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, Any]:
    """`["n_layers=8", "rope_base=5e5"]` as config fields with numbers parsed."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--override takes FIELD=VALUE, got {pair!r}")
        try:
            overrides[field] = int(value)
        except ValueError:
            try:
                overrides[field] = float(value)
            except ValueError:
                parser.error(f"--override {field}: {value!r} is not a number")
    return overrides


def peak_flops(args: argparse.Namespace, device: torch.device) -> float | None:
    if args.peak_flops:
        return args.peak_flops
    if device.type == "cuda" and args.dtype == "bfloat16":
        name = torch.cuda.get_device_name(device)
        return next((peak for gpu, peak in PEAK_BF16_FLOPS.items() if gpu in name), None)
    return None  # a (shared, virtual) CPU has no trustworthy peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--model", default="smollm2-135m", help="a ModelConfig preset")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one field of the preset, e.g. n_layers=8 (repeatable)",
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument(
        "--peak-flops",
        type=float,
        help="hardware peak FLOP/s for MFU (known GPUs are looked up in bf16)",
    )
    parser.set_defaults(repeats=5)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    malloc = "system default" if args.system_malloc else keep_freed_memory()
    transformers.logging.set_verbosity_error()

    torch.manual_seed(0)
    config = ModelConfig.from_name(args.model, **parse_overrides(parser, args.override))
    ours = LlamaLM(config).to(device, dtype)
    hf = hf_copy(ours, dtype)
    batch = torch.randint(config.vocab_size, (args.batch, args.seq_len + 1), device=device)
    # Same optimizer on both sides; fused AdamW where the device has it (CPU included).
    ours_opt = make_adamw(ours, lr=3e-4, weight_decay=0.1)
    hf_opt = make_adamw(hf, lr=3e-4, weight_decay=0.1)
    runs = {
        "ours": step_fn(ours, ours_opt, batch),
        "hf": step_fn(lambda x: hf(input_ids=x).logits, hf_opt, batch),
    }
    if args.compile:
        # Regional compilation: the 30 blocks are one module class with one graph, compiled
        # once and reused with each block's weights (~20 s on 2 CPU cores; compiling the whole
        # model, unrolled, took ~80 s here and ran no faster).
        compiled = copy.deepcopy(ours)
        for block in compiled.decoder.layers:
            block.compile()
        compiled_opt = make_adamw(compiled, lr=3e-4, weight_decay=0.1)
        runs["ours_compiled"] = step_fn(compiled, compiled_opt, batch)

    log(f"{args.model} {args.batch}x{args.seq_len} on {device} {args.dtype}: warm-up")
    warmup, initial_loss = {}, {}
    for name, run in runs.items():
        warmup[name], loss = timed(run, device)
        initial_loss[name] = loss.item()
        log(f"  {name}: {warmup[name]:.2f} s, loss {initial_loss[name]:.4f}")
    log(f"{args.repeats} timed rounds")
    seconds, _ = interleaved(runs, args.repeats, device)

    tokens = args.batch * args.seq_len
    rates = {name: rate(tokens, s) for name, s in seconds.items()}
    flops = flops_per_token(config, args.seq_len)
    peak = peak_flops(args, device)
    best = "ours_compiled" if args.compile else "ours"
    result: dict[str, Any] = {
        "benchmark": "train_step",
        "model": args.model,
        "overrides": args.override,
        "dtype": args.dtype,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens_per_step": tokens,
        "params": config.num_params(),
        "fused_adamw": all(g["fused"] for g in ours_opt.param_groups),
        "repeats": args.repeats,
        "statistic": f"best of {args.repeats} interleaved steps after a warm-up step "
        "(median_* keys: the median)",
        **environment(device),
        "malloc": malloc,
        "ours_tok_s": round(rates[best]["best"], 1),
        "hf_tok_s": round(rates["hf"]["best"], 1),
        "ratio": round(rates[best]["best"] / rates["hf"]["best"], 2),
        "median_ours_tok_s": round(rates[best]["median"], 1),
        "median_hf_tok_s": round(rates["hf"]["median"], 1),
        "initial_loss_ours": round(initial_loss["ours"], 5),
        "initial_loss_hf": round(initial_loss["hf"], 5),
        "initial_loss_abs_diff": abs(initial_loss["ours"] - initial_loss["hf"]),
        "flops_per_token": flops,
        # Achieved FLOP/s by the 6N + 12LHQT count (what MFU divides by the peak).
        "ours_gflop_s": round(flops * rates[best]["best"] / 1e9, 1),
        "hf_gflop_s": round(flops * rates["hf"]["best"] / 1e9, 1),
    }
    if peak:
        result |= {
            "peak_flops": peak,
            "ours_mfu": round(estimate_mfu(config, args.seq_len, rates[best]["best"], peak), 4),
            "hf_mfu": round(estimate_mfu(config, args.seq_len, rates["hf"]["best"], peak), 4),
        }
    if args.compile:
        # The warm-up step compiles; what it took beyond a normal step is the compile time.
        compile_s = warmup["ours_compiled"] - statistics.median(seconds["ours_compiled"])
        saved = min(seconds["ours"]) - min(seconds["ours_compiled"])
        result |= {
            "eager_ours_tok_s": round(rates["ours"]["best"], 1),
            "eager_ratio": round(rates["ours"]["best"] / rates["hf"]["best"], 2),
            "compile_s": round(compile_s, 1),
            "compile_pays_off_after_steps": math.ceil(compile_s / saved) if saved > 0 else None,
        }
    emit(result)


if __name__ == "__main__":
    main()
