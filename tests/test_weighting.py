import json
import math

import pytest
import torch

from taskrel.config import ConfigError, TrainConfig
from taskrel.train import train
from taskrel.weighting import (
    WEIGHTINGS,
    clipped_per_task_backward,
    last_shared_layer,
    make_weighting,
    pcgrad_project,
)

from helpers import batch_of, read_jsonl, tiny_config, tiny_model

TASKS = ("ner", "mtcls", "bcls", "mcls")
EQUAL = {t: 1.0 for t in TASKS}


def deterministic_model():
    model, tok = tiny_model(dropout=0.0)
    model.eval()  # no dropout in the encoder either: two passes give the same losses
    return model, tok


def step(model, weighting, batch):
    model.zero_grad(set_to_none=True)
    out = model(batch)
    return weighting.backward({t: o["loss"] for t, o in out.items()}, model)


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_method_gives_finite_loss_and_gradients_everywhere(name):
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    weighting = make_weighting(name, EQUAL, model)
    loss = step(model, weighting, batch)
    assert torch.isfinite(loss)
    g = grads(model)
    assert set(g) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(v).all() for v in g.values())
    assert all(math.isfinite(w) and w > 0 for w in weighting.current().values())


def test_static_equals_the_weighted_sum():
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    weights = {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}
    step(model, make_weighting("static", weights, model), batch)
    a = grads(model)
    model.zero_grad(set_to_none=True)
    out = model(batch)
    sum(weights[t] * o["loss"] for t, o in out.items()).backward()
    b = grads(model)
    assert all(torch.allclose(a[n], b[n]) for n in a)


def test_pcgrad_without_conflicts_is_the_plain_sum_and_removes_conflicts():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.allclose(pcgrad_project([a, b]), a + b)  # dot > 0: nothing projected
    c, d = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # c loses its component along d and vice versa: c' = (.5, .5), d' = (0, 1)
    assert torch.allclose(pcgrad_project([c, d]), torch.tensor([0.5, 1.5]))
    projected_c = torch.tensor([0.5, 0.5])
    assert torch.dot(projected_c, d) == 0


def test_pcgrad_heads_get_their_own_task_gradient():
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    step(model, make_weighting("pcgrad", EQUAL, model), batch)
    head = {n: p.grad.clone() for n, p in model.heads.named_parameters()}
    model.zero_grad(set_to_none=True)
    out = model(batch)
    sum(o["loss"] for o in out.values()).backward()
    assert all(torch.allclose(head[n], p.grad, atol=1e-6) for n, p in model.heads.named_parameters())


def test_uncertainty_weights_are_learnable_and_move():
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    weighting = make_weighting("uncertainty", EQUAL, model)
    opt = torch.optim.AdamW(weighting.param_groups(0.1))
    before = weighting.current()
    assert before == pytest.approx(EQUAL)
    for _ in range(3):
        opt.zero_grad()
        step(model, weighting, batch)
        assert all(p.grad is not None and p.grad != 0 for p in weighting.log_var.values())
        opt.step()
    after = weighting.current()
    assert all(after[t] != before[t] for t in TASKS)


def test_gradnorm_moves_weights_towards_balanced_gradients_and_keeps_their_sum():
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    weighting = make_weighting("gradnorm", EQUAL, model)
    opt = torch.optim.SGD(weighting.param_groups(0.05))
    shared = last_shared_layer(model)
    assert shared and all(any(p is q for q in model.encoder.parameters()) for p in shared)
    out = model(batch)
    norms = {}
    for t, o in out.items():
        g = torch.autograd.grad(o["loss"], shared, retain_graph=True)
        norms[t] = float(torch.sqrt(sum((x**2).sum() for x in g)))
    for _ in range(5):
        opt.zero_grad()
        step(model, weighting, batch)
        opt.step()
        weighting.after_step()
    w = weighting.current()
    assert sum(w.values()) == pytest.approx(len(TASKS))
    # on the same batch the loss ratios stay 1, so GradNorm only equalises the gradient norms:
    # the task with the largest gradient loses weight, the one with the smallest gains it
    biggest, smallest = max(norms, key=norms.get), min(norms, key=norms.get)
    assert w[biggest] < 1 < w[smallest]


def test_gradnorm_and_pcgrad_need_the_joint_strategy():
    for name in ("gradnorm", "pcgrad"):
        with pytest.raises(ConfigError, match="joint"):
            TrainConfig(strategy="alternating", weighting=name)
    TrainConfig(strategy="alternating", weighting="uncertainty")
    with pytest.raises(ConfigError, match="weighting must be one of"):
        TrainConfig(weighting="magic")


@pytest.mark.parametrize("name", ["uncertainty", "gradnorm", "pcgrad"])
def test_training_records_weights_and_resumes_them(tiny_corpus, tmp_path, name):
    cfg = tiny_config(tiny_corpus, tmp_path / "full", epochs=2, weighting=name, weights=[1, 1, 1, 1])
    full = train(cfg, progress=False, log=lambda *_: None)
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert all(math.isfinite(v) for r in records for v in r["loss"].values())
    assert records[0]["weights"] != records[1]["weights"] or name == "pcgrad"

    class Killed(Exception):
        pass

    def kill(record):
        raise Killed

    cut = tiny_config(tiny_corpus, tmp_path / "cut", epochs=2, weighting=name, weights=[1, 1, 1, 1])
    with pytest.raises(Killed):
        train(cut, callbacks=[kill], progress=False, log=lambda *_: None)
    assert train(cut, resume=True, progress=False, log=lambda *_: None) == full
    same = lambda r: (r["loss"], r["weights"], r["dev"])  # noqa: E731 (not the timings)
    assert [same(r) for r in read_jsonl(tmp_path / "cut" / "metrics.jsonl")] == [same(r) for r in records]
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["train"]["weighting"] == name


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_weighting_state_lives_on_the_model_device(name):
    """Found on an H100: a GradNorm built for a CUDA model kept its buffers on the CPU."""
    model, _ = tiny_model()
    model.to("meta")  # any device other than the default stands in for CUDA here
    weighting = make_weighting(name, {"ner": 0.8, "mtcls": 0.1, "bcls": 0.05, "mcls": 0.05}, model)
    assert all(t.device.type == "meta" for t in [*weighting.parameters(), *weighting.buffers()])


def test_per_task_clipping_bounds_each_task_and_sums_them():
    """--clip per-task: each task's weighted gradient scaled to at most max_norm, then summed."""
    model, tok = deterministic_model()
    _, batch = batch_of(model, tok)
    weights = {"ner": 1.0, "mtcls": 0.5, "bcls": 0.1, "mcls": 0.1}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    per_task, norms = {}, {}
    for t in TASKS:  # by hand: one task at a time
        model.zero_grad(set_to_none=True)
        (weights[t] * model(batch)[t]["loss"]).backward()
        per_task[t] = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
        norms[t] = float(torch.sqrt(sum(v.pow(2).sum() for v in per_task[t].values())))
    max_norm = sorted(norms.values())[1]  # between the norms: the bound bites for some tasks, not all
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for t in TASKS:
        for n, v in per_task[t].items():
            expected[n] += v * min(1.0, max_norm / (norms[t] + 1e-6))
    model.zero_grad(set_to_none=True)
    out = model(batch)
    loss = clipped_per_task_backward(weights, {t: o["loss"] for t, o in out.items()}, model, max_norm)
    assert torch.isclose(loss, sum(weights[t] * o["loss"].detach() for t, o in out.items()))
    assert all(torch.allclose(params[n].grad, expected[n], atol=1e-6) for n in params)
    # clipping the sum instead would have scaled every task by the same factor: not what was computed
    model.zero_grad(set_to_none=True)
    out = model(batch)
    sum(weights[t] * o["loss"] for t, o in out.items()).backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
    assert not all(torch.allclose(params[n].grad, expected[n], atol=1e-6) for n in params)


def test_per_task_clipping_needs_static_weights_and_trains(tiny_corpus, tmp_path):
    with pytest.raises(ConfigError, match="per-task"):
        TrainConfig(clip="per-task", weighting="pcgrad")
    cfg = tiny_config(tiny_corpus, tmp_path / "run", clip="per-task")
    metrics = train(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["clip"] == "per-task"
    assert math.isfinite(metrics["test"]["ner"]["f1"])
