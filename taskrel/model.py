"""The shared-encoder multi-task model, and its save/load format.

A model folder (format 2) holds:

- ``encoder/``: the shared encoder as ``save_pretrained`` writes it, with its
  tokenizer, so ``AutoModel.from_pretrained(FOLDER/encoder)`` loads the
  fine-tuned encoder alone;
- ``heads.safetensors``: every head's weights (and CRF transitions);
- ``taskrel.json``: the format version, each head's task, level and labels,
  the NER label sets, pooling, CRF, dropout and window length. Loading builds
  the heads from it: a task this taskrel does not know still predicts.

The folder has no ``config.json`` of its own, so Hugging Face's
``from_pretrained(FOLDER)`` refuses it instead of building a randomly
initialised model (``taskrel export --hf`` writes a folder it loads). Folders
written before (format 1: ``taskrel.safetensors`` or ``model.safetensors``
with every weight, the encoder's config and tokenizer beside them) still
load. Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from . import __version__
from .encoders import encoder_from_folder
from .errors import TaskError, TaskrelError
from .heads import HEADS, pool
from .rundir import write_json
from .tasks import Task, TaskSpec

META_FILE = "taskrel.json"
ENCODER_DIR = "encoder"
HEADS_FILE = "heads.safetensors"
FORMAT = 2
# format 1 (before 2026-11-27): every weight in one file beside the encoder's config and tokenizer
LEGACY_WEIGHTS_FILES = ("taskrel.safetensors", "model.safetensors")


class MultiTaskModel(nn.Module):
    """One encoder shared by every task; one head per task in a ``ModuleDict``."""

    def __init__(
        self, encoder, tasks: dict, pooling: str = "max", crf: bool = False, dropout: float = 0.1, ner_labels=None
    ):
        """``tasks`` maps task specs to tasks; ``ner_labels`` the NER label set of each spec's corpus."""
        super().__init__()
        self.encoder = encoder
        self.tasks = tasks
        self.ner_labels = ner_labels or {n: list(t.labels) if t.name == "ner" else ["O"] for n, t in tasks.items()}
        self.pooling = pooling
        self.crf = crf
        self.token_loss = "word-mean"  # how token losses reduce (a training setting, TrainConfig.token_loss)
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict(
            {
                TaskSpec.parse(name).key: HEADS[task.level](hidden, len(task.labels), crf=crf and task.name == "ner")
                for name, task in tasks.items()
            }
        )

    def head(self, name: str):
        return self.heads[TaskSpec.parse(name).key]

    def forward(self, batch: dict, tasks=None, with_loss: bool = True) -> dict:
        """Per task ``{"logits": ..., "loss": ...}`` (loss when the batch has labels).

        ``tasks`` limits the heads that run (all by default).
        """
        # "encoder_mask": an optional 4-D mask given to the encoder as is (torch.func.vmap needs one; see fisher.py)
        mask = batch.get("encoder_mask", batch["attention_mask"])
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state  # (R, T, H)
        return self.task_outputs(hidden, batch, tasks, with_loss)

    def task_outputs(self, hidden, batch: dict, tasks=None, with_loss: bool = True) -> dict:
        """The heads over the encoder's last hidden states ``hidden`` (R, T, H)."""
        hidden = self.dropout(hidden)
        labels = batch.get("labels") if with_loss else None
        out = {}
        words = sentences = None
        for name in tasks or self.tasks:
            task = self.tasks[name]
            lab = labels[name] if labels is not None else None
            if task.is_token:
                if words is None:
                    index = batch["word_index"].unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
                    words = hidden.gather(1, index)  # (R, W, H)
                per = batch["n_sentences"] if self.token_loss == "sentence-sum" else None
                out[name] = self.head(name)(words, batch["word_mask"], lab, per)
            else:
                if sentences is None:
                    sentences = pool(
                        hidden,
                        batch["attention_mask"],
                        batch["row_sentence"],
                        batch["first_row"],
                        batch["n_sentences"],
                        self.pooling,
                    )  # (S, H)
                out[name] = self.head(name)(sentences, None, lab)
        return out

    # ------------------------------------------------------------ save / load

    def meta(self, max_length: int, mcls_cap: int) -> dict:
        return {
            "format": FORMAT,
            "taskrel_version": __version__,
            "tasks": list(self.tasks),
            "heads": {n: {"task": t.name, "level": t.level, "labels": list(t.labels)} for n, t in self.tasks.items()},
            "labels": {n: list(t.labels) for n, t in self.tasks.items()},
            "levels": {n: t.level for n, t in self.tasks.items()},
            "ner_labels": self.ner_labels,
            "pooling": self.pooling,
            "crf": self.crf,
            "dropout": self.dropout.p,
            "max_length": max_length,
            "mcls_cap": mcls_cap,
        }

    def save(self, folder, tokenizer, max_length: int, mcls_cap: int) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # saved at every better evaluation: no "Writing model shards" bar
        try:
            self.encoder.save_pretrained(folder / ENCODER_DIR, safe_serialization=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(folder / ENCODER_DIR)
        heads = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}
        save_file(heads, str(folder / HEADS_FILE))
        for path in [folder / HEADS_FILE, *(folder / ENCODER_DIR).glob("*.safetensors")]:
            _match_umask(path)  # safetensors writes 0600; the rest of the folder follows the umask
        meta = self.meta(max_length, mcls_cap)
        write_json(folder / META_FILE, {**meta, "checksum": _checksum(folder, meta)})


def _match_umask(path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _task(spec: str, meta: dict) -> Task:
    """A head's task from ``taskrel.json``: the registry's (with ``derive``) when it agrees, else one that
    predicts but cannot derive gold labels."""
    head = meta["heads"][spec]
    try:
        known = TaskSpec.parse(spec).build(meta["ner_labels"][spec], meta["mcls_cap"])
    except TaskrelError:
        known = None
    if known is not None and known.level == head["level"] and list(known.labels) == head["labels"]:
        return known

    def derive(tags):
        raise TaskError(f"task {spec!r} of this model is not this taskrel's (unknown, or other labels): "
                        "it predicts, but gold labels cannot be derived for it")  # fmt: skip

    return Task(head["task"], head["level"], tuple(head["labels"]), derive)


def _legacy_tasks(meta: dict, meta_path: Path) -> dict:
    tasks = {n: TaskSpec.parse(n).build(meta["ner_labels"][n], meta["mcls_cap"]) for n in meta["tasks"]}
    for name, task in tasks.items():
        if list(task.labels) != meta["labels"][name]:
            raise ModelFolderError(f"{meta_path}: labels of {name!r} differ from the task registry's")
    return tasks


def _load_weights(module: nn.Module, files: list[Path], what: str, strict_prefix: str | None = None) -> None:
    """Load safetensors files into ``module``; every key must match (outside ``strict_prefix``'s complement)."""
    state = {}
    for f in files:
        state |= load_file(str(f))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if strict_prefix is not None:
        missing = [k for k in missing if k.startswith(strict_prefix)]
    if missing or unexpected:
        raise ModelFolderError(
            f"{what}: the weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _checksum(folder: Path, meta: dict) -> str:
    """SHA-256 over ``taskrel.json``'s content and every weight file: any later edit of labels or weights shows."""
    import hashlib

    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for path in [folder / HEADS_FILE, *sorted((folder / ENCODER_DIR).glob("*.safetensors"))]:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load(folder, device="cpu"):
    """``(model, tokenizer, meta)`` from a model folder written by ``MultiTaskModel.save`` (any format).

    A folder that is incomplete, damaged or edited after saving is refused with
    ``not a valid taskrel model folder: <reason>`` (``ModelFolderError``).
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a taskrel model folder (no {META_FILE})")
    try:
        return _load(folder, meta_path, device)
    except ModelFolderError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:  # damaged, edited
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFolderError(f"{folder}: not a valid taskrel model folder: {type(e).__name__}: {first}") from None


def _load(folder: Path, meta_path: Path, device):
    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{folder}: not a valid taskrel model folder: {META_FILE} is not a JSON object")
    if meta.get("pooling") not in ("cls", "mean", "max"):
        raise ModelFolderError(f"{folder}: not a valid taskrel model folder: pooling {meta.get('pooling')!r}")
    if meta.get("format", 1) > FORMAT:
        raise ModelFolderError(f"{meta_path}: written by a newer taskrel (format {meta['format']}); upgrade taskrel")
    if meta.get("format", 1) >= 2:
        if "checksum" in meta and meta["checksum"] != _checksum(folder, meta):
            raise ModelFolderError(
                f"{folder}: not a valid taskrel model folder: {META_FILE} or the weights changed after saving "
                "(checksum); train again, or restore the folder"
            )
        tasks = {n: _task(n, meta) for n in meta["tasks"]}
        encoder, tokenizer = encoder_from_folder(folder / ENCODER_DIR)
        model = MultiTaskModel(encoder, tasks, meta["pooling"], meta["crf"], meta["dropout"], meta["ner_labels"])
        shards = sorted((folder / ENCODER_DIR).glob("*.safetensors"))
        _load_weights(model.encoder, shards, f"{folder / ENCODER_DIR}")
        _load_weights(model, [folder / HEADS_FILE], f"{folder / HEADS_FILE}", strict_prefix="heads.")
    else:
        tasks = _legacy_tasks(meta, meta_path)
        encoder, tokenizer = encoder_from_folder(folder)
        model = MultiTaskModel(encoder, tasks, meta["pooling"], meta["crf"], meta["dropout"], meta["ner_labels"])
        weights = next((folder / f for f in LEGACY_WEIGHTS_FILES if (folder / f).is_file()), None)
        if weights is None:
            raise ModelFolderError(f"{folder}: no weights ({' or '.join(LEGACY_WEIGHTS_FILES)})")
        load_model(model, str(weights), device="cpu")
    if len(tokenizer) < encoder.config.vocab_size // 2:
        raise ModelFolderError(
            f"{folder}: not a valid taskrel model folder: its tokenizer has {len(tokenizer)} entries against the "
            f"encoder's {encoder.config.vocab_size} (a tokenizer file is missing)"
        )
    return model.to(device).eval(), tokenizer, meta


class ModelFolderError(TaskrelError):
    """A model folder that is incomplete, inconsistent, or from a newer taskrel."""
