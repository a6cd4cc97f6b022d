"""`transformers serve` on a tiny model made here: a one-layer Llama with seeded
random weights and a byte-level BPE tokenizer trained on the shipped prompts
(model hubs are out of reach). One process builds both and serves them, so that
transformers is imported once.

    python tests_selftest/tiny_hf_server.py DIR PORT
"""
from __future__ import annotations

import sys
from pathlib import Path

from xpuperf.generation.prompts import SAMPLE

# A chat template, so that /v1/chat/completions has one to apply.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


def build(folder: Path) -> None:
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
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=0, eos_token_id=1)).save_pretrained(folder)


def main() -> None:
    folder, port = Path(sys.argv[1]), sys.argv[2]
    build(folder)
    from transformers.cli.transformers import main as cli

    sys.argv = ["transformers", "serve", str(folder), "--port", port, "--host", "127.0.0.1",
                "--device", "cpu", "--log-level", "warning"]
    cli()


if __name__ == "__main__":
    main()
