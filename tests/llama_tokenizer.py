"""A small tokenizer shaped like Llama 2's tokenizer.json, for tests that need no real vocabulary:
characters as tokens (plus the given merges), a space becomes "▁", one is prepended to the text,
and decoding strips one leading space, so a piece of a text tokenizes differently alone than in
place. It carries Llama 2's chat format."""

from __future__ import annotations

import string
from collections.abc import Sequence

import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers

from modelcore.chat import ChatTemplate
from modelcore.tokenizer import Tokenizer

SPECIAL = ("<unk>", "<s>", "</s>")


def llama_style_tokenizer(merges: Sequence[tuple[str, str]] = ()) -> Tokenizer:
    pieces = [*SPECIAL, "▁", *(string.ascii_letters + string.digits + string.punctuation)]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    backend = tokenizers.Tokenizer(
        models.BPE(vocab=vocab, merges=list(merges), unk_token="<unk>", fuse_unk=True)
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL]
    )
    return Tokenizer(
        backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=ChatTemplate.llama2().source,
    )
