"""Throughput of the RLHF stages on the SmolLM2-135M shape (random weights, so every response
runs to --max-new-tokens and the work per run is fixed).

- reward-model training: tokens/s of a full step (forward, margin loss, backward, AdamW), with
  every weight trained and in the cheap mode that trains the top 2 blocks;
- rejection sampling: samples/s, sampling K responses per prompt and scoring them with the RM;
- one PPO step, split into generation, scoring (reward models, policy/reference log-probs,
  values, advantages) and training, with the generation share (OpenRLHF reports ~80%).

    python benchmarks/rlhf_step.py                        # CPU, float32, small settings
    python benchmarks/rlhf_step.py --device cuda --dtype bfloat16 --ppo-batch 64 --max-new-tokens 256

The last line of stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import DTYPES, emit, environment, keep_freed_memory, log, rate, timed

from modelcore.assets import smollm2_gguf_path
from modelcore.config import ModelConfig
from modelcore.model import LlamaLM, ScalarModel
from modelcore.optim import make_adamw
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import Prompt
from rlhf.train.encoding import ChatEncoder, Exchange
from rlhf.train.judge import RewardJudge, sample_exchanges
from rlhf.train.ppo import PPOConfig, PPOObjective, PPOTrainer
from rlhf.train.ranking import RankedPair, pair_batch
from rlhf.train.reward import RankingObjective
from rlhf.train.runs import Run, accumulate, optimizer_step
from rlhf.train.trainable import freeze, select_trainable

QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for writing a good bug report.",
    "Explain what a reward model is in one paragraph.",
    "Write a haiku about autumn.",
]


def reward_training(
    policy: LlamaLM, args: argparse.Namespace, device: torch.device, train_layers: int
) -> float:
    """Best tokens/s of reward-model training steps on random pairs of --seq-len tokens."""
    model = ScalarModel.from_policy(policy)
    select_trainable(model, train_layers=train_layers, lora_rank=0, lora_alpha=1.0)
    optimizer = make_adamw(model, lr=1e-5, weight_decay=0.1)
    config = model.config
    pairs = [
        RankedPair(
            Exchange(torch.randint(config.vocab_size, (args.seq_len,)).tolist(), args.seq_len // 2),
            Exchange(torch.randint(config.vocab_size, (args.seq_len,)).tolist(), args.seq_len // 2),
            1.0,
        )
        for _ in range(args.rm_pairs)
    ]
    batch = pair_batch(pairs, device)
    run = _run(args, args.scratch)
    objective = RankingObjective(model)

    def step() -> None:
        accumulate(run, objective, [batch], denominator=len(pairs))
        optimizer_step(optimizer, None, 1.0)

    timed(step, device)  # warm-up
    seconds = [timed(step, device)[0] for _ in range(args.repeats)]
    return rate(2 * args.rm_pairs * args.seq_len, seconds)["best"]


def _run(args: argparse.Namespace, out: Path) -> Run:
    """A run (process group, device) configured like the PPO step measured."""
    config = PPOConfig(
        out=out,
        data=Path("-"),
        policy=Path("-"),
        helpfulness_rm=Path("-"),
        device=args.device,
        dtype=args.dtype,
        batch_size=args.ppo_batch,
        minibatch_size=args.ppo_minibatch,
        micro_batch_size=args.micro_batch,
        max_new_tokens=args.max_new_tokens,
        generation_batch_size=args.ppo_batch,
        score_batch_size=args.ppo_batch,
    )
    return Run(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--model", default="smollm2-135m", help="a ModelConfig preset")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per RM sequence")
    parser.add_argument("--rm-pairs", type=int, default=4, help="pairs per RM step")
    parser.add_argument("--prompts", type=int, default=4, help="rejection-sampling prompts")
    parser.add_argument("--samples", type=int, default=4, help="K per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--ppo-batch", type=int, default=8, help="prompts per PPO step")
    parser.add_argument("--ppo-minibatch", type=int, default=4)
    parser.add_argument("--micro-batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as scratch:
        args.scratch = Path(scratch)
        benchmark(args)


def benchmark(args: argparse.Namespace) -> None:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    malloc = keep_freed_memory()

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_gguf(smollm2_gguf_path())
    encoder = ChatEncoder(tokenizer)
    config = ModelConfig.from_name(args.model)
    policy = LlamaLM(config).to(device, dtype)

    log(f"reward-model training, {args.rm_pairs} pairs x {args.seq_len} tokens")
    rm_full = reward_training(policy, args, device, train_layers=0)
    rm_top2 = reward_training(policy, args, device, train_layers=2)

    rm = freeze(ScalarModel.from_policy(policy))
    torch.nn.init.normal_(rm.score.weight, std=0.02)  # a zero head would score every text alike
    judge = RewardJudge(rm, None, pad_id=encoder.pad_id, batch_size=args.ppo_batch)
    prompts = [Prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(args.prompts)]
    repeated = [p for p in prompts for _ in range(args.samples)]

    def rejection_round() -> None:
        exchanges = sample_exchanges(
            policy,
            encoder,
            repeated,
            temperature=1.0,
            max_new_tokens=args.max_new_tokens,
            seed=0,
            batch_size=len(repeated),
        )
        judge(exchanges, [False] * len(exchanges))

    log(f"rejection sampling, {args.prompts} prompts x K={args.samples}")
    timed(rejection_round, device)
    rs_seconds = [timed(rejection_round, device)[0] for _ in range(args.repeats)]

    log(f"PPO steps, batch {args.ppo_batch}, minibatch {args.ppo_minibatch}")
    run = _run(args, args.scratch)
    ppo_policy = copy.deepcopy(policy)
    value = copy.deepcopy(rm).requires_grad_(True)
    adamw: dict[str, Any] = {"weight_decay": 0.1, "betas": (0.9, 0.95), "eps": 1e-5}
    optimizers = [make_adamw(ppo_policy, lr=1e-6, **adamw), make_adamw(value, lr=1e-6, **adamw)]
    objective = PPOObjective(ppo_policy, value, clip=0.2, value_clip=0.2)
    trainer = PPOTrainer(
        run, run.config, encoder, judge, freeze(copy.deepcopy(policy)), objective, optimizers
    )
    ppo_prompts = [Prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(args.ppo_batch)]
    trainer.step(0, ppo_prompts)  # warm-up
    steps = [trainer.step(index, ppo_prompts) for index in range(1, args.repeats + 1)]
    best = min(steps, key=lambda s: s["generation_s"] + s["scoring_s"] + s["training_s"])
    total = best["generation_s"] + best["scoring_s"] + best["training_s"]

    emit(
        {
            "benchmark": "rlhf_step",
            "model": args.model,
            "dtype": args.dtype,
            **environment(device),
            "malloc": malloc,
            "statistic": f"best of {args.repeats} runs after a warm-up",
            "rm_pairs": args.rm_pairs,
            "rm_seq_len": args.seq_len,
            "rm_train_tok_s": round(rm_full, 1),
            "rm_train_top2_tok_s": round(rm_top2, 1),
            "rs_prompts": args.prompts,
            "rs_samples_per_prompt": args.samples,
            "max_new_tokens": args.max_new_tokens,
            "rs_samples_per_s": round(rate(len(repeated), rs_seconds)["best"], 2),
            "rs_median_samples_per_s": round(rate(len(repeated), rs_seconds)["median"], 2),
            "ppo_batch": args.ppo_batch,
            "ppo_minibatch": args.ppo_minibatch,
            "ppo_step_s": round(total, 2),
            "ppo_generation_s": round(best["generation_s"], 2),
            "ppo_scoring_s": round(best["scoring_s"], 2),
            "ppo_training_s": round(best["training_s"], 2),
            "ppo_generation_share": round(best["generation_s"] / total, 3),
            "ppo_median_step_s": round(
                statistics.median(
                    s["generation_s"] + s["scoring_s"] + s["training_s"] for s in steps
                ),
                2,
            ),
        }
    )


if __name__ == "__main__":
    main()
