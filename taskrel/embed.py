"""``taskrel embed``: a Fisher embedding for each task, from its own single-task model.

For every task spec (``CORPUS:TASK``, or ``TASK`` on ``--data``): take its
fine-tuned single-task model (a folder given in ``models``, or one trained here
with the core trainer under ``EMB_DIR/models/LABEL``), draw N training
sentences with the seed, and compute the Fisher (``fisher.py``).

Written to ``EMB_DIR``: ``tasks/LABEL.npz`` per task as it finishes (a killed
run resumes), then ``embeddings.npz`` (keys ``SPEC::COMPONENT``) and
``meta.json``: tasks, their corpus and kind, components and shapes, label mode,
N, seed, encoder, model folders, and per task the Fisher seconds beside the
seconds one training epoch takes on the same number of sentences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from . import __version__
from .config import ConfigError, EmbedConfig, RunConfig
from .logs import say
from .rundir import MODEL, RunDir, record_study, write_json
from .sources import load_sources
from .tasks import TaskSpec

SEP = "::"
CONTROL = "control"  # the shuffled-label embedding of a task: key TASK::COMPONENT::control


def section_runs(ec: EmbedConfig, steps: dict, folder: Path) -> list[RunConfig]:
    """The single-task models an embedding study section trains on one corpus (those not given in
    ``ec.models``), for ``taskrel estimate``."""
    return [single_task_config(ec, t, folder) for t in ec.tasks if t not in ec.models]


def single_task_config(ec: EmbedConfig, spec: str, out: Path) -> RunConfig:
    base = ec.base
    model = replace(base.model, tasks=[spec])
    train = replace(base.train, weights=None, weighting="static")
    return RunConfig(base.data, model, train, str(out / "models" / TaskSpec.parse(spec).label))


WEIGHTLESS = ".restored"


def set_aside_weightless(cfg: RunConfig, log=say) -> bool:
    """A study's own model that finished but has no weights (runs reach a fresh checkout without them,
    ``archive``) cannot be embedded: its folder is moved to ``<folder>.restored`` (replacing an older one) so that
    the same settings train again in its place (on the same kind of machine and thread count, the same model;
    its new record says where it trained). Returns whether it was set aside."""
    import shutil

    run = RunDir(cfg.out)
    if not run.done or run.model.exists():
        return False
    aside = Path(f"{cfg.out}{WEIGHTLESS}")
    shutil.rmtree(aside, ignore_errors=True)
    Path(cfg.out).rename(aside)
    log(f"{cfg.out}: finished, but restored without its weights; trained again (its records moved to {aside})")
    return True


def weightless_pending(ec: EmbedConfig, steps: dict, folder: Path) -> list[RunConfig]:
    """The section's own models (``StudyKind.retrains``) that finished but were restored without their weights
    and still have to be embedded: they train again, so they are not counted as finished."""
    again = []
    for spec in ec.tasks:
        if spec in ec.models:
            continue
        label = TaskSpec.parse(spec).label
        if all(_task_done(ec, f, label) for f in style_folders(ec, folder).values()):
            continue
        cfg = single_task_config(ec, spec, folder)
        run = RunDir(cfg.out)
        if run.done and not run.model.exists():
            again.append(cfg)
    return again


def before_section(ec: EmbedConfig, steps: dict, folder: Path, log=say) -> None:
    """Before a section's models train (``StudyKind.before``): the models it still has to embed that were
    restored without their weights are set aside, so that they train again with the others."""
    for cfg in weightless_pending(ec, steps, folder):
        set_aside_weightless(cfg, log)


def _model_for(ec: EmbedConfig, spec: str, out: Path, progress: bool, log) -> tuple[Path, float | None]:
    """The model folder of a task, trained if needed; and a training epoch's seconds per sentence."""
    from .train import train

    if spec in ec.models:
        given = Path(ec.models[spec])
        run = RunDir(given.parent)
        if given.exists() or not (given.name == MODEL and run.done):
            return given, None
        # a finished run whose weights are gone (runs reach a fresh checkout without them, ``archive``): the same
        # settings trained again here, into this study's own folder; on the same kind of machine and thread count
        # the same model, elsewhere one of the same settings (its record says so)
        cfg = replace(run.run_config, out=str(out / "models" / TaskSpec.parse(spec).label))
        log(f"{spec}: {given} has no weights (a finished run restored without them); training its settings again")
    else:
        cfg = single_task_config(ec, spec, out)
        set_aside_weightless(cfg, log)
    train(cfg, resume=True, progress=progress, log=log, test=False)  # only the model is needed
    run = RunDir(cfg.out)
    per_sentence = float(np.mean([r["train_seconds"] for r in run.records])) / run.config["resolved"]["train_sentences"]
    return run.model, per_sentence


def shuffled_labels(items: list, head: str, is_token: bool, seed: int) -> list:
    """The control's examples: the same sentences with the task's labels permuted among them.

    Sentence tasks: the sentences' labels are permuted. Token tasks: every word's label is drawn, without
    replacement, from the pooled word labels of all the sentences (label frequencies kept, structure lost).
    """
    rng = np.random.default_rng(seed + 7919)
    if not is_token:
        perm = rng.permutation(len(items))
        return [replace(it, labels={**it.labels, head: items[j].labels[head]}) for it, j in zip(items, perm)]
    pool = rng.permutation(np.concatenate([np.asarray(it.labels[head]) for it in items])).tolist()
    out, k = [], 0
    for it in items:
        n = len(it.labels[head])
        out.append(replace(it, labels={**it.labels, head: pool[k : k + n]}))
        k += n
    return out


def style_folders(ec: EmbedConfig, out) -> dict[str, Path]:
    """Each Fisher style's embeddings folder: ``ec.style``'s is ``out``, every one of ``also_styles`` its
    sub-folder ``out/STYLE`` (computed on the same models and sentences in the same pass)."""
    out = Path(out)
    return {ec.style: out} | {style: out / style for style in ec.also_styles}


def analyse_styles(ec: EmbedConfig, out) -> dict:
    """Purity and similarity (``similarity.analyse``) of every style's embeddings folder: ``{style: purity}``."""
    from .similarity import analyse

    return {style: analyse(load_embeddings(folder)) for style, folder in style_folders(ec, out).items()}


def _task_files(folder: Path, label: str) -> tuple[Path, Path, Path]:
    """A task's files in a style's folder: its embedding, its record and its shuffled-label control."""
    return tuple(folder / "tasks" / f"{label}{ext}" for ext in (".npz", ".json", ".control.npz"))


def _task_done(ec: EmbedConfig, folder: Path, label: str) -> bool:
    done, saved, control = _task_files(folder, label)
    return done.is_file() and saved.is_file() and (control.is_file() or not ec.control)


def embed(ec: EmbedConfig, out, progress: bool = True, log=say) -> dict:
    """Compute (or resume) every task's embedding in every style; write each style's ``embeddings.npz`` and
    ``meta.json``; returns ``ec.style``'s meta."""
    import torch

    from .data import encode
    from .machine import resolve_device
    from .model import load

    out = Path(out)
    folders = style_folders(ec, out)
    # each style's own settings: the first style's are ec's; a further one's name no further styles
    as_style = {style: ec if style == ec.style else replace(ec, style=style, also_styles=[]) for style in folders}
    for folder in folders.values():
        (folder / "tasks").mkdir(parents=True, exist_ok=True)
    record_study(out / "embed.json", ec, free=("models", "layer_reduce"))  # layer_reduce: analysis only
    if ec.base.train.threads:
        torch.set_num_threads(ec.base.train.threads)
    device = resolve_device(ec.base.train.device)
    info: dict[str, dict] = {style: {} for style in folders}
    for spec in ec.tasks:
        label = TaskSpec.parse(spec).label
        todo = [style for style, folder in folders.items() if not _task_done(ec, folder, label)]
        for style in set(folders) - set(todo):
            info[style][spec] = json.loads(_task_files(folders[style], label)[1].read_text())
        if not todo:
            log(f"{spec}: done")
            continue
        folder, epoch_per_sentence = _model_for(ec, spec, out, progress, log)
        model, tokenizer, meta = load(folder, device)
        head = spec if spec in model.tasks else meta["tasks"][0]
        cfg = RunConfig(ec.base.data, replace(ec.base.model, tasks=[spec]), replace(ec.base.train, weights=None))
        src = next(iter(load_sources(cfg, ("train", "devel")).values()))
        # the sentences its model was trained on (the seeded train_fraction subset), or all of train
        train_sents = src.train if ec.sentences == "trained" else src.corpus.splits["train"]
        rng = np.random.default_rng(ec.seed)
        pick = sorted(rng.choice(len(train_sents), min(ec.examples, len(train_sents)), replace=False).tolist())
        enc = encode([train_sents[i] for i in pick], tokenizer, {head: model.tasks[head]}, meta["max_length"])
        enc = sorted(enc, key=lambda e: e.length)  # similar lengths together: less padding
        record = {"model": str(folder), "head": head, "epoch_per_sentence": epoch_per_sentence}
        for style in todo:  # the same model and sentences for every style
            info[style][spec] = _embed_task(
                as_style[style], spec, folders[style], model, tokenizer, enc, record, device, progress, log
            )
    metas = {style: _write_embeddings(as_style[style], folder, info[style], log) for style, folder in folders.items()}
    return metas[ec.style]


def _embed_task(ec: EmbedConfig, spec: str, out: Path, model, tokenizer, enc: list, record: dict, device, progress,
                log) -> dict:  # fmt: skip
    """One task's embedding (and its shuffled-label control) in ``ec.style`` into ``out/tasks``; its record."""
    from .fisher import fisher_embedding

    label, head = TaskSpec.parse(spec).label, record["head"]
    done, saved, control = _task_files(out, label)
    fisher = partial(
        fisher_embedding,
        model,
        spec=head,
        pad_id=tokenizer.pad_token_id or 0,
        device=device,
        components=ec.components,
        label_mode=ec.label_mode,
        seed=ec.seed,
        batch_size=ec.batch_size,
        method=ec.method,
        progress=progress,
        style=ec.style,
    )
    if ec.control:  # same model, same sentences, labels shuffled
        shuffled = shuffled_labels(enc, head, model.tasks[head].is_token, ec.seed)
        tmp = control.with_name(f"{label}.control.tmp.npz")
        np.savez(tmp, **fisher(shuffled))
        tmp.replace(control)
    if done.is_file() and saved.is_file():
        log(f"{spec}: control added ({ec.style} Fisher)")
        return json.loads(saved.read_text())
    t0 = time.perf_counter()
    emb = fisher(enc)
    seconds = time.perf_counter() - t0
    epoch_seconds = record["epoch_per_sentence"] * len(enc) if record["epoch_per_sentence"] else None
    info = {
        "corpus": TaskSpec.parse(spec).canonical(ec.base.data.data)[0],
        "kind": TaskSpec.parse(spec).task,
        "level": model.tasks[head].level,
        "model": record["model"],
        "head": head,
        "examples": len(enc),
        "fisher_seconds": seconds,
        "train_epoch_seconds_same_sentences": epoch_seconds,
        "fisher_vs_epoch": seconds / epoch_seconds if epoch_seconds else None,
        "shapes": {c: list(v.shape) for c, v in emb.items()},
    }
    tmp = done.with_name(f"{label}.tmp.npz")
    np.savez(tmp, **emb)
    tmp.replace(done)
    write_json(saved, info)
    ratio = f" ({info['fisher_vs_epoch']:.2f}x a training epoch)" if epoch_seconds else ""
    log(f"{spec}: {ec.style} Fisher over {len(enc)} sentences in {seconds:.1f} s{ratio}")
    return info


def _write_embeddings(ec: EmbedConfig, out: Path, info: dict, log) -> dict:
    """``embeddings.npz`` and ``meta.json`` of one style's folder, from its tasks' files."""
    arrays = {}
    for spec in ec.tasks:
        done, _, control = _task_files(out, TaskSpec.parse(spec).label)
        with np.load(done) as z:
            arrays |= {f"{spec}{SEP}{c}": z[c] for c in z.files}
        if ec.control:
            with np.load(control) as z:
                arrays |= {f"{spec}{SEP}{c}{SEP}{CONTROL}": z[c] for c in z.files}
    np.savez(out / "embeddings.npz", **arrays)
    meta = {
        "taskrel_version": __version__,
        "tasks": ec.tasks,
        "components": ec.components,
        "label_mode": ec.label_mode,
        "style": ec.style,
        "also_styles": list(ec.also_styles),  # their folders: out/STYLE
        "sentences": ec.sentences,
        "layer_reduce": ec.layer_reduce,
        "examples": ec.examples,
        "seed": ec.seed,
        "method": ec.method,
        "control": ec.control,
        "encoder": ec.base.model.encoder,
        "per_task": {spec: info[spec] for spec in ec.tasks},
    }
    write_json(out / "meta.json", meta)
    log(f"wrote {out / 'embeddings.npz'} and {out / 'meta.json'}")
    return meta


@dataclass
class Embeddings:
    """A folder written by ``embed``: ``vectors(component)`` gives a (tasks, D) matrix."""

    folder: Path
    meta: dict
    arrays: dict

    @property
    def tasks(self) -> list[str]:
        return list(self.meta["tasks"])

    def kinds(self) -> list[str]:
        return [self.meta["per_task"][t]["kind"] for t in self.tasks]

    def levels(self) -> list[str]:
        """``token`` or ``sentence`` per task."""
        from .tasks import TASKS

        per = self.meta["per_task"]
        return [per[t].get("level") or TASKS[per[t]["kind"]](["O"], {"mcls_cap": 3}).level for t in self.tasks]

    def corpora(self) -> list[str]:
        return [self.meta["per_task"][t]["corpus"] for t in self.tasks]

    @property
    def has_control(self) -> bool:
        return bool(self.meta.get("control"))

    def vectors(self, component: str, control: bool = False) -> np.ndarray:
        """(tasks, D); ``control``: the shuffled-label embeddings of the same tasks."""
        if component not in self.meta["components"]:
            raise ConfigError(f"{self.folder}: no component {component!r}; it has {self.meta['components']}")
        if control and not self.has_control:
            raise ConfigError(f"{self.folder}: embedded without the shuffled-label control")
        suffix = f"{SEP}{CONTROL}" if control else ""
        arrays = [self.arrays[f"{t}{SEP}{component}{suffix}"] for t in self.tasks]
        if component == "layer_outputs" and self.meta.get("layer_reduce") == "mean":
            arrays = [a.mean(0) for a in arrays]  # (layers, H) -> (H,)
        return np.stack([a.reshape(-1) for a in arrays])

    def layers(self, component: str = "layer_outputs") -> np.ndarray:
        """(tasks, layers, H): one vector per task and layer."""
        return np.stack([self.arrays[f"{t}{SEP}{component}"] for t in self.tasks])


def load_embeddings(folder) -> Embeddings:
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise ConfigError(f"{folder}: not an embeddings folder (no meta.json); run `taskrel embed` first")
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "embeddings.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return Embeddings(folder, meta, arrays)
