"""Tiny models and data for the model tests.

``TASKREL_TEST_DEVICE=cuda`` runs the model, weighting, Fisher and training
tests on the GPU (``benchmarks/gpu/run.sh``); the default is the CPU.
"""

import json
import os

import torch

from taskrel.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.corpus import Sentence
from taskrel.data import collate, encode, to_device
from taskrel.encoders import tiny_encoder
from taskrel.model import MultiTaskModel
from taskrel.tasks import build_tasks

DEVICE = torch.device(os.environ.get("TASKREL_TEST_DEVICE", "cpu"))

NER_LABELS = ["O", "B-Disease", "I-Disease"]
SENTENCES = [
    Sentence(("Breast", "cancer", "was", "found", "."), ("B-Disease", "I-Disease", "O", "O", "O")),
    Sentence(("HNPCC", "runs", "in", "families"), ("B-Disease", "O", "O", "O")),
    Sentence(("No", "entity", "here"), ("O", "O", "O")),
]


def tiny_model(tasks=("ner", "mtcls", "bcls", "mcls"), pooling="max", crf=False, seed=0, dropout=0.1):
    torch.manual_seed(seed)
    encoder, tokenizer = tiny_encoder()
    model = MultiTaskModel(encoder, build_tasks(list(tasks), NER_LABELS), pooling, crf, dropout)
    return model.to(DEVICE), tokenizer


def batch_of(model, tokenizer, sentences=SENTENCES, max_length=64):
    enc = encode(sentences, tokenizer, model.tasks, max_length)
    return enc, to_device(collate(enc, model.tasks, tokenizer.pad_token_id), DEVICE)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_config(corpus, out, **train_kw):
    """A fast tiny-encoder run on the four paper tasks."""
    return RunConfig(
        DataConfig(str(corpus)),
        ModelConfig("tiny"),
        TrainConfig(**{"epochs": 2, "batch_size": 4, "lr": 1e-3, "threads": 1, "device": DEVICE.type, **train_kw}),
        str(out),
    )


def overfit(model, batch, steps: int = 150, lr: float = 3e-3):
    """Train a tiny model on one batch until it fits it (dropout should be 0)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = sum(o["loss"] for o in model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


class Killed(Exception):
    """Stands for a kill in the middle of a run (raised by ``kill_after``)."""


def kill_after(epoch: int):
    """A training callback that 'kills' the run once the given epoch's record and checkpoint are written."""

    def callback(record):
        if record["epoch"] == epoch:
            raise Killed

    return callback
