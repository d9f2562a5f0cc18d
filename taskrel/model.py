"""The shared-encoder multi-task model, and its save/load format.

A model folder holds ``taskrel.safetensors`` (all weights; not named
``model.safetensors``, so that Hugging Face's ``from_pretrained`` refuses the
folder instead of loading a randomly initialised model from it), the encoder's
``config.json`` and tokenizer files, and ``taskrel.json`` (tasks, label lists,
pooling, CRF, window length). It loads without the training configuration and
without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from . import __version__
from .encoders import encoder_from_folder
from .errors import TaskrelError
from .heads import HEADS, pool
from .rundir import write_json
from .tasks import TaskSpec

META_FILE = "taskrel.json"
WEIGHTS_FILE = "taskrel.safetensors"
LEGACY_WEIGHTS_FILE = "model.safetensors"


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
            "taskrel_version": __version__,
            "tasks": list(self.tasks),
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
        save_model(self, str(folder / WEIGHTS_FILE))
        _match_umask(folder / WEIGHTS_FILE)  # safetensors writes 0600; the rest of the folder follows the umask
        self.encoder.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        write_json(folder / META_FILE, self.meta(max_length, mcls_cap))


def _match_umask(path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def load(folder, device="cpu"):
    """``(model, tokenizer, meta)`` from a model folder written by ``MultiTaskModel.save``."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a taskrel model folder (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    tasks = {n: TaskSpec.parse(n).build(meta["ner_labels"][n], meta["mcls_cap"]) for n in meta["tasks"]}
    for name, task in tasks.items():
        if list(task.labels) != meta["labels"][name]:
            raise ValueError(f"{meta_path}: labels of {name!r} differ from the task registry's")
    encoder, tokenizer = encoder_from_folder(folder)
    model = MultiTaskModel(encoder, tasks, meta["pooling"], meta["crf"], meta["dropout"], meta["ner_labels"])
    weights = folder / WEIGHTS_FILE
    if not weights.is_file() and (folder / LEGACY_WEIGHTS_FILE).is_file():  # folders written before 2026-11-26
        weights = folder / LEGACY_WEIGHTS_FILE
    load_model(model, str(weights), device=str(device))
    return model.to(device).eval(), tokenizer, meta


class DeviceError(TaskrelError, RuntimeError):
    pass


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' asked for, but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)
