"""`transformers serve` on a tiny model made here: a one-layer Llama with seeded
random weights and a byte-level BPE tokenizer trained on the shipped prompts
(model hubs are out of reach). One process builds both and serves them, so that
transformers is imported once.

    python tests_selftest/tiny_hf_server.py DIR PORT
    python tests_selftest/tiny_hf_server.py DIR PORT --positions 40960 --no-eos

``--positions``: the longest prompt and answer it takes (the long-context
workloads' 32k need 40,960, as Qwen3's); ``--no-eos``: a model with no
end-of-sequence token, whose answers run to max_tokens (a random model's
greedy tokens reach its EOS by chance).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xpuperf.generation.prompts import SAMPLE

# A chat template, so that /v1/chat/completions has one to apply.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


def build(folder: Path, positions: int = 512, eos: bool = True) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SAMPLE.read_text(encoding="utf-8").splitlines(), trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
        bos_token_id=0, eos_token_id=1 if eos else None)).save_pretrained(folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("port")
    p.add_argument("--positions", type=int, default=512)
    p.add_argument("--no-eos", action="store_true")
    args = p.parse_args()
    build(args.folder, args.positions, not args.no_eos)
    from transformers.cli.transformers import main as cli

    sys.argv = ["transformers", "serve", str(args.folder), "--port", args.port,
                "--host", "127.0.0.1", "--device", "cpu", "--log-level", "warning"]
    cli()


if __name__ == "__main__":
    main()
