"""A comparison's pair from two model versions against one response, same weights, same run.

After a week of the loop the batch serves the new policy beside its parent. In the loop's CPU
configuration only the top blocks and the final norm were trained, so the two versions share
their embedding and every block below. This script loads SmolLM2-135M-Instruct from the GGUF
file as the parent and a copy with its top `--train-layers` blocks and final norm moved as the
child (what the values are does not change the cost of sampling), prepares both in `--mode`
(SERVING_SAMPLING_MODE) and samples `--new-tokens` tokens per response (no stop token, so
every run samples the same number), interleaved, `--repeats` times each:

- one_response: the parent alone, one row: the time an annotator waits for a single reply;
- one_version_pair: the parent at two temperatures, one batch of two rows (a batch serving one
  model);
- in_turn: the parent's and the child's rows, a token each in turn
  (`modelcore.sampling.generate_together`);
- shared_trunk: both rows through the shared blocks once, then each version's own
  (`modelcore.shared_trunk.SharedTrunk`), as the generate worker samples them;
- second_process: the child's row in a second process, in parallel with the parent's here
  (`modelcore.sampling_process`), as the generate worker samples two versions that share no
  block (it makes no use of the shared blocks: the cost is an unrelated model's).

`*_vs_one` is each pair's time over one response's (best runs; the median runs' beside it): the
target is a pair at about one response. `same_tokens` says whether the shared trunk and the
second process sampled exactly the tokens the versions sample in turn.

    python benchmarks/two_versions.py                        # int8, 256 tokens, 3 repeats
    python benchmarks/two_versions.py --new-tokens 32 --repeats 1

The last line of stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
from functools import partial
from pathlib import Path

import torch
from _common import emit, environment, interleaved, log, rate

from modelcore.assets import smollm2_gguf_path
from modelcore.chat import ChatTemplate, Message, encode_dialogue
from modelcore.checkpoint import checkpoint_digest, save_checkpoint
from modelcore.gguf_import import import_gguf
from modelcore.model import LlamaLM
from modelcore.sampling import SamplingParams, decode, generate, generate_together
from modelcore.sampling_modes import SAMPLING_MODES, prepare_for_sampling
from modelcore.sampling_process import Request, SamplingProcess
from modelcore.shared_trunk import SharedTrunk, common_parts, model_digests

QUESTION = "Give me three ideas for a healthy breakfast, and say why each one is good for you."


def moved_top(model: LlamaLM, layers: int) -> LlamaLM:
    """A copy of `model` whose top `layers` blocks and final norm differ, as a version the loop
    trained with train_layers=`layers` does."""
    child = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    decoder = child.decoder
    with torch.no_grad():
        for module in [*decoder.layers[len(decoder.layers) - layers :], decoder.norm]:
            for weight in module.parameters():
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.add_(noise * weight.std() * 0.05)
    return child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=SAMPLING_MODES, default="auto")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--train-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device("cpu")
    parent, tokenizer = import_gguf(smollm2_gguf_path())
    parent = parent.eval()
    child = moved_top(parent, args.train_layers)
    common = common_parts(model_digests(parent), model_digests(child))
    # The child's checkpoint, for the second process to load (a SmolLM2 copy: removed at exit).
    scratch = tempfile.TemporaryDirectory(prefix="two-versions-")
    saved = Path(scratch.name) / "child"
    save_checkpoint(child, tokenizer, saved)
    parent, child = (prepare_for_sampling(m, args.mode) for m in (parent, child))
    if not all(isinstance(m, LlamaLM) for m in (parent, child)):
        parser.error(f"--mode {args.mode} compiles whole models: they cannot share a trunk")
    template = ChatTemplate.for_tokenizer(tokenizer)
    prompt = encode_dialogue(
        tokenizer, template, [Message("user", QUESTION)], add_generation_prompt=True
    ).ids
    sides = [
        SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.9, seed=1),
        SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, top_p=0.9, seed=2),
    ]
    pad = tokenizer.pad_id or 0

    def in_turn() -> list[list[int]]:
        decodings = [
            decode(model, [prompt], [params], pad_id=pad)
            for model, params in zip((parent, child), sides, strict=True)
        ]
        return [c.tokens for [c] in generate_together(decodings, on_tokens=[None, None])]

    beside = SamplingProcess(threads=max(1, torch.get_num_threads() // 2))
    request = Request(
        str(saved),
        checkpoint_digest(saved),
        dtype=torch.float32,
        device="cpu",
        mode=args.mode,
        prompts=[prompt],
        params=sides[1:],
        pad_id=pad,
    )

    def in_a_second_process() -> list[list[int]]:
        decodings = [decode(parent, [prompt], sides[:1], pad_id=pad), beside.decode(request)]
        with beside.beside_this_one():
            completed = generate_together(decodings, on_tokens=[None, None])
        return [c.tokens for [c] in completed]

    def on_shared_trunk() -> list[list[int]]:
        trunk = SharedTrunk([parent, child], common, rows=[1, 1])
        return [c.tokens for c in generate(trunk, [prompt] * 2, sides, pad_id=pad)]  # type: ignore[arg-type]

    runs = {
        "one_response": partial(generate, parent, [prompt], sides[:1], pad_id=pad),
        "one_version_pair": partial(generate, parent, [prompt] * 2, sides, pad_id=pad),
        "in_turn": in_turn,
        "shared_trunk": on_shared_trunk,
        "second_process": in_a_second_process,
    }
    log(f"warm-up, then {args.repeats} interleaved runs of each ({common.blocks} shared blocks)")
    for run in runs.values():
        run()
    seconds, results = interleaved(runs, args.repeats, device)
    tokens = {"one_response": args.new_tokens}
    tokens.update({name: 2 * args.new_tokens for name in runs if name != "one_response"})
    one = seconds["one_response"]
    result = {
        "benchmark": "two_versions",
        "mode": args.mode,
        "new_tokens": args.new_tokens,
        "prompt_tokens": len(prompt),
        "train_layers": args.train_layers,
        "shared_blocks": common.blocks,
        "shared_head": common.head,
        "repeats": args.repeats,
        "seconds": {
            name: {"best": min(s), "median": statistics.median(s)} for name, s in seconds.items()
        },
        "tok_s": {name: rate(tokens[name], s) for name, s in seconds.items()},
        **{
            f"{name}_vs_one": {
                "best": min(s) / min(one),
                "median": statistics.median(s) / statistics.median(one),
            }
            for name, s in seconds.items()
            if name != "one_response"
        },
        "same_tokens": results["shared_trunk"] == results["in_turn"] == results["second_process"],
        "load_average": os.getloadavg(),
        **environment(device),
    }
    beside.close()
    scratch.cleanup()
    emit(result)


if __name__ == "__main__":
    main()
