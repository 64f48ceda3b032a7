"""Train small byte-level BPE tokenizers (demo world, tests) and load local tokenizer directories."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# RoBERTa's special tokens, so a tokenizer trained here plugs into RoBERTa-style text towers.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def train_bpe_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 2000,
                        model_max_length: int = 77) -> Path:
    """Train a RoBERTa-style byte-level BPE tokenizer on `texts` and save it as a Hugging Face directory."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # Lower-casing keeps a small vocabulary useful: "A beep" and "a beep" share tokens.
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   cls_token="<s>", sep_token="</s>", model_max_length=model_max_length)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer from a local directory; GPT-2 style tokenizers get their end-of-text token as padding."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path} (tokenizers are loaded from local folders only)")
    # A tokenizer folder may come from inside a checkpoint (models/embedded.py): its config never selects code.
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
