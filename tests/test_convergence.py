"""Budgets that converge: early stopping, evaluation every N steps, the dev cap, fixed subsets, precision."""

import json

import pytest
import torch

from taskrel.cli import main
from taskrel.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.corpus import subset_sha1
from taskrel.evaluate import predict
from taskrel.precision import autocast, resolve_precision
from taskrel.sources import load_sources
from taskrel.train import train

from conftest import TINY_RUN, conll, write_corpus
from helpers import DEVICE, SENTENCES, batch_of, overfit, read_jsonl, tiny_config, tiny_model

QUIET = {"progress": False, "log": lambda *_: None}


def scripted_dev(monkeypatch, curve):
    """Replace dev evaluation by a scripted main-task curve; returns the list of calls."""
    calls = []

    def fake_evaluate(model, encoded, sentences, *args, **kwargs):
        score = curve[min(len(calls), len(curve) - 1)]
        calls.append(score)
        return {n: {"f1": score, "accuracy": score} for n in model.tasks}

    monkeypatch.setattr("taskrel.train.evaluate", fake_evaluate)
    return calls


def test_patience_stops_and_keeps_the_best_evaluation(tiny_corpus, tmp_path, monkeypatch):
    # 2 steps an epoch (8 sentences, batch 4): one evaluation per epoch
    scripted_dev(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.28, 0.9, 0.95])
    metrics = train(tiny_config(tiny_corpus, tmp_path / "r", epochs=20, patience=3), **QUIET)
    records = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert len(records) == 5  # best at evaluation 2, then 3 without improvement
    assert metrics["stopped"] == "patience" and metrics["converged"] is True
    assert metrics["best_epoch"] == 2 and metrics["best_step"] == 4 and metrics["steps"] == 10
    assert [r["selected"] for r in records] == [True, True, False, False, False]
    # the schedule's horizon is the maximum budget: the learning rate is far from 0 where the run stopped
    assert records[-1]["lr"] > 0.5 * 1e-3


def test_min_epochs_delays_the_stop(tiny_corpus, tmp_path, monkeypatch):
    scripted_dev(monkeypatch, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    metrics = train(tiny_config(tiny_corpus, tmp_path / "r", epochs=20, patience=1, min_epochs=4), **QUIET)
    assert metrics["stopped"] == "patience" and metrics["steps"] == 8 and metrics["best_epoch"] == 1


@pytest.mark.parametrize(
    "curve, converged",
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], False),  # still climbing when the budget ran out
        ([0.1, 0.6, 0.6, 0.6, 0.6, 0.6], True),  # flat over the last evaluations
        ([0.1, 0.6, 0.6, 0.6, 0.6, 0.601], True),  # gained less than converge_tol
        ([0.1, 0.2, 0.3], False),  # too few evaluations to tell
    ],
)
def test_converged_when_the_maximum_budget_stopped_the_run(tiny_corpus, tmp_path, monkeypatch, curve, converged):
    scripted_dev(monkeypatch, curve)
    metrics = train(tiny_config(tiny_corpus, tmp_path / "r", epochs=len(curve)), **QUIET)
    assert metrics["stopped"] == "max_epochs"
    assert metrics["converged"] is converged


def test_merge_dev_cannot_tell_convergence(tiny_corpus, tmp_path):
    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=2)
    cfg.data.merge_dev = True
    metrics = train(cfg, **QUIET)
    assert metrics["converged"] is None and metrics["stopped"] == "max_epochs" and metrics["best_epoch"] == 2


def test_eval_every_counts_steps(tiny_corpus, tmp_path, monkeypatch):
    calls = scripted_dev(monkeypatch, [0.1 * k for k in range(1, 20)])
    metrics = train(tiny_config(tiny_corpus, tmp_path / "r", epochs=3, eval_every=1), **QUIET)
    records = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert len(calls) == 6 and [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in records] == [1, 1, 2, 2, 3, 3]
    assert metrics["evaluations"] == 6 and metrics["best_step"] == 6
    calls.clear()
    train(tiny_config(tiny_corpus, tmp_path / "r4", epochs=3, eval_every=4), **QUIET)
    assert [r["step"] for r in read_jsonl(tmp_path / "r4" / "metrics.jsonl")] == [4, 6]  # and the end of the budget


def test_resume_within_an_epoch_equals_an_unbroken_run(tiny_corpus, tmp_path, monkeypatch):
    full = train(tiny_config(tiny_corpus, tmp_path / "full", epochs=2, eval_every=1), **QUIET)

    class Killed(Exception):
        pass

    def kill(record):
        if record["step"] == 3:  # in the middle of epoch 2
            raise Killed

    cfg = tiny_config(tiny_corpus, tmp_path / "resumed", epochs=2, eval_every=1)
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill], **QUIET)
    resumed = train(cfg, resume=True, **QUIET)
    assert resumed == full
    losses = lambda run: [r["loss"] for r in read_jsonl(tmp_path / run / "metrics.jsonl")]  # noqa: E731
    assert losses("resumed") == losses("full")


def big_corpus(folder, n=40):
    sents = [f"w{i}/O disease{i}/B-Disease x/O" if i % 2 else f"w{i}/O y/O" for i in range(n)]
    return write_corpus(folder, conll(*sents), conll(*sents[:30]), conll(*sents[:12]))


def sources_of(corpus, seed, **data_kw):
    cfg = RunConfig(DataConfig(str(corpus), **data_kw), ModelConfig("tiny", ["ner"]), TrainConfig(seed=seed), "")
    return next(iter(load_sources(cfg).values()))


def test_the_training_subset_is_fixed_across_seeds_unless_asked_to_vary(tmp_path):
    corpus = big_corpus(tmp_path / "c")
    one, two = sources_of(corpus, 1, train_fraction=0.25), sources_of(corpus, 2, train_fraction=0.25)
    assert len(one.train) == 10 and subset_sha1(one.train) == subset_sha1(two.train)
    vary1 = sources_of(corpus, 1, train_fraction=0.25, subset_seed="vary")
    vary2 = sources_of(corpus, 2, train_fraction=0.25, subset_seed="vary")
    assert subset_sha1(vary1.train) != subset_sha1(vary2.train)
    other = sources_of(corpus, 1, train_fraction=0.25, subset_seed=5)
    assert subset_sha1(other.train) != subset_sha1(one.train)
    with pytest.raises(ConfigError, match="subset_seed"):
        DataConfig("x", subset_seed="sometimes")


def test_dev_cap_is_seeded_fixed_and_never_touches_test(tmp_path):
    corpus = big_corpus(tmp_path / "c")
    one, two = sources_of(corpus, 1, dev_max_sentences=7), sources_of(corpus, 2, dev_max_sentences=7)
    assert len(one.dev) == 7 and one.dev == two.dev and len(one.test) == 12
    assert sources_of(corpus, 1, dev_max_sentences=500).dev == one.corpus.splits["devel"]


def test_dev_cap_in_a_run_selects_on_the_subset_and_reports_full_dev_and_test(tmp_path, monkeypatch):
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)  # a CPU without native bf16
    corpus = big_corpus(tmp_path / "c")
    cfg = tiny_config(corpus, tmp_path / "r", epochs=1)
    cfg.data.dev_max_sentences = 5
    metrics = train(cfg, **QUIET)
    resolved = json.loads((tmp_path / "r" / "config.json").read_text())["resolved"]
    assert (
        resolved["dev_sentences"] == 5
        and resolved["threads"] == 1
        and resolved["precision"] == "fp32"
        or DEVICE.type == "cuda"
    )  # noqa: E501
    assert metrics["test"]["bcls"]["support"] == 12 and metrics["dev"]["bcls"]["support"] == 30


def test_merge_dev_with_a_fraction_is_refused():
    with pytest.raises(ConfigError, match="merge_dev with train_fraction"):
        DataConfig("x", train_fraction=0.1, merge_dev=True)


def test_cli_convergence_flags_reach_the_run(tiny_corpus, tmp_path):
    run = tmp_path / "r"
    args = ["train", "--data", str(tiny_corpus), "--out", str(run), "--epochs", "4", "--patience", "2"]
    args += ["--eval-every", "3", "--schedule", "constant", "--subset-seed", "vary", "--precision", "fp32"]
    assert main([*args, *TINY_RUN]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["patience"] == 2 and cfg["train"]["eval_every"] == 3 and cfg["train"]["schedule"] == "constant"
    assert cfg["data"]["subset_seed"] == "vary" and cfg["resolved"]["precision"] == "fp32"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] in ("patience", "max_epochs") and "converged" in metrics
    # a constant schedule keeps the peak rate after warm-up
    assert read_jsonl(run / "metrics.jsonl")[-1]["lr"] == pytest.approx(1e-3)


def test_precision_auto_resolves_by_device(monkeypatch, tmp_path):
    from taskrel import precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("cpu", "auto") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("cpu", "auto") == "bf16"
    monkeypatch.undo()
    for flags, fast in (("fpu sse avx512f avx512bw", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16", True)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        assert precision.cpu_has_fast_bf16.__wrapped__(str(tmp_path / "cpuinfo")) is fast
    assert precision.cpu_has_fast_bf16.__wrapped__(str(tmp_path / "missing")) is False
    assert resolve_precision("cuda", "auto") == "bf16"
    assert resolve_precision("cpu", "bf16") == "bf16" and resolve_precision("cuda", "fp32") == "fp32"
    with pytest.raises(ValueError):
        resolve_precision("cpu", "fp8")


def test_a_bf16_training_step_keeps_fp32_master_weights():
    model, tok = tiny_model(dropout=0.0)
    _, batch = batch_of(model, tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with autocast(DEVICE, "bf16"):
        out = model(batch)
    loss = sum(o["loss"] for o in out.values())
    assert loss.dtype == torch.float32  # losses in fp32
    loss.backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_bf16_predictions_match_fp32_on_a_trained_model():
    model, tok = tiny_model(dropout=0.0)
    enc, batch = batch_of(model, tok)
    overfit(model, batch)
    fp32 = predict(model, enc, tok.pad_token_id, precision="fp32")
    bf16 = predict(model, enc, tok.pad_token_id, precision="bf16")
    assert fp32 == bf16
    model.eval()
    with torch.no_grad():
        a = model(batch, with_loss=False)["ner"]["logits"]
        with autocast(DEVICE, "bf16"):
            b = model(batch, with_loss=False)["ner"]["logits"].float()
    assert (torch.linalg.norm(a - b) / torch.linalg.norm(a)).item() < 2e-2  # bf16 operands: 1e-3 to 1e-2
    assert len(SENTENCES) == len(fp32["ner"])


def test_sentence_sum_token_loss_by_hand():
    import torch.nn.functional as F

    model, tok = tiny_model(dropout=0.0)
    model.eval()
    _, batch = batch_of(model, tok)
    word_mean = model(batch)["ner"]["loss"]
    model.token_loss = "sentence-sum"
    out = model(batch)
    logits, labels = out["ner"]["logits"], batch["labels"]["ner"]
    by_hand = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum") / 3
    torch.testing.assert_close(out["ner"]["loss"], by_hand)
    words = sum(len(s.tokens) for s in SENTENCES)  # every word labelled: the ratio is words per sentence
    torch.testing.assert_close(out["ner"]["loss"] / word_mean, torch.tensor(words / 3, device=word_mean.device))
    # sentence losses are untouched
    model.token_loss = "word-mean"
    torch.testing.assert_close(out["bcls"]["loss"], model(batch)["bcls"]["loss"])


def test_token_loss_is_a_recorded_training_setting(tiny_corpus, tmp_path):
    train(tiny_config(tiny_corpus, tmp_path / "r", epochs=1, token_loss="sentence-sum"), **QUIET)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["token_loss"] == "sentence-sum"
    with pytest.raises(ConfigError, match="token_loss"):
        TrainConfig(token_loss="sum")


def test_alternating_at_matched_updates_takes_as_many_steps_as_joint(tiny_corpus, tmp_path):
    steps = {}
    for name, kw in {
        "joint": {},
        "per-task": {"strategy": "alternating"},
        "matched": {"strategy": "alternating", "alternating_updates": "matched"},
    }.items():
        steps[name] = train(tiny_config(tiny_corpus, tmp_path / name, epochs=2, **kw), **QUIET)["steps"]
    assert steps["matched"] == steps["joint"] == 4 and steps["per-task"] == 4 * steps["joint"]


def test_non_finite_weights_are_refused():
    for bad in ([float("inf"), 1.0], [float("nan"), 1.0], [-1.0, 1.0]):
        with pytest.raises(ConfigError, match="finite and non-negative"):
            RunConfig(DataConfig("x"), ModelConfig("tiny", ["ner", "bcls"]), TrainConfig(weights=bad))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    from taskrel.train import TrainingDiverged
    from taskrel.weighting import WEIGHTINGS

    static = WEIGHTINGS["static"]
    calls = {"n": 0}

    def exploding(self, losses, model):
        calls["n"] += 1
        loss = static_backward(self, losses, model)
        return loss * float("nan") if calls["n"] > 2 else loss  # the third step diverges

    static_backward = static.backward
    monkeypatch.setattr(static, "backward", exploding)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3"):
        train(tiny_config(tiny_corpus, tmp_path / "r", epochs=3), **QUIET)
    state = json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and not (tmp_path / "r" / "metrics.json").exists()


def test_bf16_is_refused_where_the_cpu_only_emulates_it(tiny_corpus, tmp_path, monkeypatch):
    from taskrel.precision import PrecisionUnavailable

    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)  # an AVX2-only CPU
    with pytest.raises(PrecisionUnavailable, match="no native bf16"):
        train(tiny_config(tiny_corpus, tmp_path / "bf16", epochs=1, device="cpu", precision="bf16"), **QUIET)
    assert not (tmp_path / "bf16" / "config.json").exists()  # refused before the run folder was started
    train(tiny_config(tiny_corpus, tmp_path / "auto", epochs=1, device="cpu"), **QUIET)  # auto: fp32 there
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["resolved"]["precision"] == "fp32"


def test_a_run_started_in_one_precision_is_not_resumed_in_another(tiny_corpus, tmp_path, monkeypatch):
    """precision auto resolves per machine: a run begun in fp32 (a CPU without native bf16) and resumed where
    auto means bf16 is refused before anything is read or written, and still resumes where it began."""
    from taskrel.precision import PrecisionChanged

    class Killed(Exception):
        pass

    def kill_after_first(record):
        raise Killed

    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)
    cfg = tiny_config(tiny_corpus, tmp_path / "r", epochs=3, device="cpu", precision="auto")
    with pytest.raises(Killed):
        train(cfg, callbacks=[kill_after_first], **QUIET)
    before = {f: (tmp_path / "r" / f).read_text() for f in ("config.json", "metrics.jsonl")}
    assert json.loads(before["config.json"])["resolved"]["precision"] == "fp32"
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: True)  # resumed on a bf16 CPU
    with pytest.raises(PrecisionChanged, match=r"r/config.json: this run started in fp32 .* go on in bf16"):
        train(cfg, resume=True, **QUIET)
    assert {f: (tmp_path / "r" / f).read_text() for f in before} == before
    monkeypatch.setattr("taskrel.precision.cpu_has_fast_bf16", lambda: False)
    assert train(cfg, resume=True, **QUIET)["best_epoch"] >= 1
