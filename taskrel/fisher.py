"""Fisher task embeddings (after Vu et al., 2020, TaskEmb), with per-example gradients.

The embedding of a task is the diagonal of the Fisher information of its own
fine-tuned model, estimated over N training sentences:

    F = mean over sentences x of (d log p(y | x) / d theta)²

with ``log p(y | x)`` summed over the sentence's labelled words for token tasks.
Unlike the TaskEmb reference code, the gradient is taken per example (never of
a batch-mean loss, so the result does not depend on the batch size) and the
model is in eval mode (no dropout).

Labels ``y``: ``empirical`` uses the gold labels; ``true`` samples them from
the model's own predictive distribution (one sample per example, each word
independently for token tasks), from a generator seeded by ``(seed, example)``.

Components (each recorded in ``meta.json``):

- ``layer_outputs``: theta = the output of every encoder layer (as TaskEmb);
  the squared gradient is averaged over the sentence's tokens, giving an
  array (layers, hidden). Per-example gradients come exactly from one batched
  backward pass, because no example's output depends on another's input.
- ``encoder``: theta = every encoder parameter except the embedding layer
  (vocabulary-sized and mostly untouched by any one task); a vector of that many
  entries (about 10.6 M for MiniLM).
- ``head``: theta = the task head's weight matrix (labels, hidden), summed over
  labels to a (hidden,) vector so that heads with different label sets compare.

Parameter components need per-example parameter gradients: ``method="vmap"``
computes them vectorised (``torch.func``: vmap over grad of a functional call);
``method="loop"`` is the plain reference, one backward pass per example.
Sentences cut into several windows always take the loop.

No further normalisation is applied to the stored Fisher; the similarity
measures (``similarity.py``) normalise.

``style="taskemb"`` computes instead what the TaskEmb reference code computes
(``run_taskemb_SL.py`` of Vu et al., gradients of the gold labels): per batch,
the gradient of the batch-mean loss, in train mode (dropout on); for layer
outputs its masked sum over the batch's tokens, squared, divided by the
batch's token count; for parameters the squared gradient; summed over batches
and divided by the number of sentences. It depends on the batch size and the
dropout draw (seeded); it differs from the default by squaring a sum of
gradients instead of summing squares. Sentences are batched in the order given.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .data import collate, to_device
from .heads import IGNORE
from .tasks import TaskSpec

COMPONENTS = ("layer_outputs", "encoder", "head")
LABEL_MODES = ("empirical", "true")
METHODS = ("vmap", "loop")
STYLES = ("taskrel", "taskemb")


def log_likelihood(logits, labels, is_token: bool, row_sentence=None, n_sentences: int = 1):
    """Per-sentence log-likelihood: (S,). Token logits (R, W, L), labels (R, W) with -100 off-word."""
    logp = F.log_softmax(logits.float(), -1)
    if not is_token:
        return logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    on = labels != IGNORE
    per_word = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * on  # (R, W)
    per_row = per_word.sum(-1)
    if row_sentence is None:
        return per_row
    return per_row.new_zeros(n_sentences).index_add(0, row_sentence, per_row)


def sample_labels(logits, labels, is_token: bool, row_sentence, seed: int, first_index: int):
    """Labels drawn from the model's distribution, one generator per example (``seed``, example number)."""
    probs = F.softmax(logits.float(), -1).cpu()
    out = labels.clone().cpu()
    rows_of = row_sentence.cpu().tolist() if is_token else range(len(labels))
    gens: dict[int, torch.Generator] = {}
    for r, s in enumerate(rows_of):
        g = gens.setdefault(s, torch.Generator().manual_seed(seed * 1_000_003 + first_index + s))
        if is_token:
            on = out[r] != IGNORE
            if on.any():
                out[r, on] = torch.multinomial(probs[r, on], 1, generator=g).squeeze(-1)
        else:
            out[r] = torch.multinomial(probs[r], 1, generator=g).squeeze(-1)
    return out.to(labels.device)


def component_params(model, spec: str, component: str) -> dict[str, torch.nn.Parameter]:
    """The named parameters a parameter component differentiates (model-level names)."""
    if component == "encoder":
        return {f"encoder.{n}": p for n, p in model.encoder.named_parameters() if not n.startswith("embeddings.")}
    if component == "head":
        prefix = f"heads.{TaskSpec.parse(spec).key}."
        return {n: p for n, p in model.named_parameters() if n.startswith(prefix) and n.endswith("classifier.weight")}
    raise ValueError(f"{component!r} is not a parameter component")


def _reduce(component: str, grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared per-example gradients (E, ...) to (E, D) vectors."""
    if component == "head":
        (w,) = grads.values()  # the classifier weight: (E, L, H)
        return w.float().pow(2).sum(1)
    return torch.cat([grads[n].float().pow(2).flatten(1) for n in sorted(grads)], 1)


class FisherAccumulator:
    """Sums of per-example squared gradients per component, and the example count."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, component: str, per_example: torch.Tensor) -> None:
        total = per_example.detach().double().sum(0).cpu()
        self.sums[component] = self.sums[component] + total if component in self.sums else total

    def result(self) -> dict[str, np.ndarray]:
        return {c: (s / max(self.n, 1)).float().numpy() for c, s in self.sums.items()}


def _labels(model, batch, spec, label_mode, seed, first_index):
    task = model.tasks[spec]
    labels = batch["labels"][spec]
    if label_mode == "empirical":
        return labels
    with torch.no_grad():
        logits = model(batch, tasks=[spec], with_loss=False)[spec]["logits"]
    return sample_labels(logits, labels, task.is_token, batch["row_sentence"], seed, first_index)


def _layer_outputs(model, batch, spec, labels) -> torch.Tensor:
    """Per-example mean over tokens of the squared gradient w.r.t. each layer's output: (S, layers, H)."""
    task = model.tasks[spec]
    out = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    states = out.hidden_states[1:]
    logits = model.task_outputs(states[-1], batch, [spec], with_loss=False)[spec]["logits"]
    ll = log_likelihood(logits, labels, task.is_token, batch["row_sentence"], batch["n_sentences"])
    grads = torch.autograd.grad(ll.sum(), states)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (R, T, 1)
    S, rs = batch["n_sentences"], batch["row_sentence"]
    count = mask.sum(1).new_zeros(S, 1).index_add(0, rs, mask.sum(1))  # tokens per sentence
    per_layer = []
    for g in grads:
        row = (g.float().pow(2) * mask).sum(1)  # (R, H)
        per_layer.append(row.new_zeros(S, row.shape[1]).index_add(0, rs, row) / count)
    return torch.stack(per_layer, 1)


def _loop_params(model, items, tasks, spec, labels_of, component, pad_id, device) -> torch.Tensor:
    """Reference: one backward pass per example; (E, D)."""
    task = model.tasks[spec]
    params = component_params(model, spec, component)
    rows = []
    for k, item in enumerate(items):
        b = to_device(collate([item], tasks, pad_id), device)
        logits = model(b, tasks=[spec], with_loss=False)[spec]["logits"]
        ll = log_likelihood(logits, labels_of(k, b), task.is_token, b["row_sentence"], 1).sum()
        g = torch.autograd.grad(ll, list(params.values()), allow_unused=True)
        g = {n: (torch.zeros_like(p) if x is None else x).unsqueeze(0) for (n, p), x in zip(params.items(), g)}
        rows.append(_reduce(component, g))
    return torch.cat(rows)


def _vmap_params(model, batch, spec, labels, component) -> torch.Tensor:
    """Vectorised per-example gradients of a batch of one-window sentences; (E, D)."""
    task = model.tasks[spec]
    params = {n: p.detach() for n, p in component_params(model, spec, component).items()}
    device = batch["input_ids"].device

    def one(p, input_ids, attention, word_index, word_mask, lab):
        T = input_ids.shape[0]
        zero = torch.zeros(1, dtype=torch.long, device=device)
        b = {
            "input_ids": input_ids[None],
            "attention_mask": attention[None],
            "encoder_mask": attention.bool()[None, None, None, :].expand(1, 1, T, T),
            "word_index": word_index[None],
            "word_mask": word_mask[None],
            "row_sentence": zero,
            "first_row": zero,
            "n_sentences": 1,
        }
        logits = functional_call(model, p, (b,), {"tasks": [spec], "with_loss": False})[spec]["logits"]
        return log_likelihood(logits, lab[None], task.is_token).sum()

    keys = ("input_ids", "attention_mask", "word_index", "word_mask")
    g = vmap(grad(one), in_dims=(None, 0, 0, 0, 0, 0))(params, *(batch[k] for k in keys), labels)
    return _reduce(component, g)


def fisher_embedding(
    model,
    items: list,
    spec: str,
    pad_id: int,
    device,
    components=("layer_outputs",),
    label_mode: str = "empirical",
    seed: int = 1,
    batch_size: int = 8,
    method: str = "vmap",
    progress=None,
    style: str = "taskrel",
) -> dict[str, np.ndarray]:
    """The diagonal Fisher of task ``spec`` over the encoded sentences ``items``, per component."""
    from tqdm.auto import tqdm

    if label_mode not in LABEL_MODES or method not in METHODS or not set(components) <= set(COMPONENTS):
        raise ValueError(f"bad label mode {label_mode!r}, method {method!r} or components {components}")
    if getattr(model.head(spec), "crf", None) is not None:
        raise ValueError("Fisher embeddings need a softmax head: this model's NER head has a CRF")
    if style == "taskemb":
        if label_mode != "empirical":
            raise ValueError("the taskemb style uses the gold labels (label_mode empirical)")
        return _taskemb(model, items, spec, pad_id, device, components, seed, batch_size, progress)
    if style != "taskrel":
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model itself, not of a random sub-network
    tasks = {spec: model.tasks[spec]}
    acc = FisherAccumulator()
    param_components = [c for c in components if c != "layer_outputs"]
    try:
        starts = range(0, len(items), batch_size)
        for start in tqdm(starts, desc=f"fisher {spec}", disable=None if progress else True, leave=False):
            chunk = items[start : start + batch_size]
            batch = to_device(collate(chunk, tasks, pad_id), device)
            labels = _labels(model, batch, spec, label_mode, seed, start)
            if "layer_outputs" in components:
                acc.add("layer_outputs", _layer_outputs(model, batch, spec, labels).detach())
            single = [k for k, it in enumerate(chunk) if len(it.rows) == 1]
            for comp in param_components:
                if method == "vmap" and len(single) == len(chunk):
                    acc.add(comp, _vmap_params(model, batch, spec, labels, comp))
                else:
                    labels_of = _per_example_labels(batch, labels, model.tasks[spec].is_token)
                    acc.add(comp, _loop_params(model, chunk, tasks, spec, labels_of, comp, pad_id, device))
            acc.n += len(chunk)
    finally:
        model.train(was_training)
    return acc.result()


def _taskemb(model, items, spec, pad_id, device, components, seed, batch_size, progress) -> dict[str, np.ndarray]:
    """The TaskEmb reference computation (module docstring): squared batch-level gradients, train mode."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.train()
    tasks = {spec: model.tasks[spec]}
    acc = FisherAccumulator()
    params = {c: component_params(model, spec, c) for c in components if c != "layer_outputs"}
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the dropout draw
    try:
        starts = range(0, len(items), batch_size)
        for start in tqdm(starts, desc=f"taskemb {spec}", disable=None if progress else True, leave=False):
            chunk = items[start : start + batch_size]
            batch = to_device(collate(chunk, tasks, pad_id), device)
            out = model.encoder(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
            )
            states = list(out.hidden_states[1:])
            loss = model.task_outputs(states[-1], batch, [spec])[spec]["loss"]  # the batch-mean loss
            flat = [p for ps in params.values() for p in ps.values()]
            grads = torch.autograd.grad(loss, states + flat, allow_unused=True)
            if "layer_outputs" in components:
                mask = batch["attention_mask"].unsqueeze(-1).float()  # (R, T, 1)
                summed = [(g.float() * mask).sum((0, 1)) for g in grads[: len(states)]]  # (H,) per layer
                acc.add("layer_outputs", (torch.stack(summed).pow(2) / mask.sum())[None])
            k = len(states)
            for comp, ps in params.items():
                gs = {n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(ps.items(), grads[k:])}
                k += len(ps)
                acc.add(comp, _reduce(comp, {n: g.unsqueeze(0) for n, g in gs.items()}))
            acc.n += len(chunk)
    finally:
        torch.set_rng_state(generator_state)
        model.train(was_training)
    return acc.result()


def _per_example_labels(batch, labels, is_token):
    """``labels_of(k, b)``: example k's labels, moved to its own one-example batch ``b``."""
    if not is_token:
        return lambda k, b: labels[k : k + 1].to(b["input_ids"].device)
    rows = batch["row_sentence"]

    def labels_of(k, b):
        mine = labels[rows == k]
        return mine[:, : b["word_mask"].shape[1]]

    return labels_of
