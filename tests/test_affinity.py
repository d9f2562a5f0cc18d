import json

import pytest
import torch

from taskrel.affinity import TagAffinity, adamw_lookahead, run_affinity
from taskrel.train import param_groups, train

from helpers import batch_of, read_jsonl, tiny_config, tiny_model

TASKS = ["ner", "mtcls", "bcls", "mcls"]


def test_lookahead_restores_the_parameters_exactly_and_leaves_the_optimizer_alone():
    model, tok = tiny_model()
    _, batch = batch_of(model, tok)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    model(batch)["ner"]["loss"].backward()
    optimizer.step()  # the optimizer has moments to imitate
    optimizer.zero_grad()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    tag = TagAffinity({t: 1.0 for t in TASKS}, every=1)
    model.train()
    tag(0, model, optimizer, batch, TASKS)
    assert model.training
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    for p, s in optimizer.state.items():
        assert all(torch.equal(v, state[id(p)][k]) for k, v in s.items())
    assert set(tag.sums) == {(i, j) for i in TASKS for j in TASKS} and tag.lookaheads == 1
    # a step on a task's own loss lowers that loss: positive self-affinity
    assert all(tag.sums[(t, t)] > 0 for t in TASKS)


def test_lookahead_step_is_the_optimizers_own_step():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.01)
    for _ in range(2):  # build moments
        p.grad = torch.randn(5)
        opt.step()
    g = torch.randn(5)
    before = p.detach().clone()
    look = torch.nn.Parameter(p.detach().clone())  # a copy that shares p's optimizer state and group
    opt.state[look] = opt.state[p]
    opt.param_groups[0]["params"].append(look)
    with torch.no_grad():
        adamw_lookahead([look], [g], opt)
    opt.param_groups[0]["params"].pop()
    p.grad = g
    opt.step()
    assert torch.allclose(look, p, atol=1e-7) and not torch.allclose(look, before)


def test_a_tag_run_trains_exactly_like_a_plain_run(tiny_corpus, tmp_path):
    quiet = {"progress": False, "log": lambda *_: None}
    plain = train(tiny_config(tiny_corpus, tmp_path / "plain", weights=[1, 1, 1, 1]), **quiet)
    table = run_affinity(tiny_config(tiny_corpus, tmp_path / "tag", weights=[1, 1, 1, 1]), every=2, **quiet)
    tagged = json.loads((tmp_path / "tag/metrics.json").read_text())
    assert tagged["test"] == plain["test"] and tagged["dev"] == plain["dev"]
    losses = lambda run: [r["loss"] for r in read_jsonl(tmp_path / run / "metrics.jsonl")]  # noqa: E731
    assert losses("tag") == losses("plain")
    assert len(table) == 16 and table["affinity"].notna().all() and (table["count"] > 0).all()
    for f in ("affinity.csv", "affinity.json", "affinity.png"):
        assert (tmp_path / "tag" / f).stat().st_size > 0


def test_a_killed_affinity_run_resumes_with_its_lookaheads_and_gives_the_same_affinities(
    tiny_corpus, tmp_path, monkeypatch
):
    import pandas as pd

    import taskrel.train as train_module
    from taskrel.affinity import STATE, AffinityStateLost

    quiet = {"progress": False, "log": lambda *_: None}
    cfg = lambda out: tiny_config(tiny_corpus, tmp_path / out, weights=[1, 1, 1, 1], epochs=2)  # noqa: E731
    unbroken = run_affinity(cfg("unbroken"), every=2, **quiet)
    real_train = train_module.train

    def killed_after_one_evaluation(c, *args, callbacks=(), **kwargs):
        def kill(record):
            raise KeyboardInterrupt

        return real_train(c, *args, callbacks=[*callbacks, kill], **kwargs)

    for name in ("killed", "lost"):
        monkeypatch.setattr(train_module, "train", killed_after_one_evaluation)
        with pytest.raises(KeyboardInterrupt):
            run_affinity(cfg(name), every=2, **quiet)
        monkeypatch.setattr(train_module, "train", real_train)
        assert json.loads((tmp_path / name / STATE).read_text())["step"] > 0
    said = []
    resumed = run_affinity(cfg("killed"), every=2, progress=False, log=said.append)
    assert any("resuming the affinity run" in line for line in said)
    pd.testing.assert_frame_equal(resumed, unbroken, check_exact=True)
    a, b = (json.loads((tmp_path / r / "affinity.json").read_text()) for r in ("killed", "unbroken"))
    assert a["lookaheads"] == b["lookaheads"] > 0
    assert run_affinity(cfg("killed"), every=2, **quiet).equals(resumed)  # finished: nothing trains again
    (tmp_path / "lost" / STATE).unlink()  # a run whose look-aheads were not saved cannot be completed
    with pytest.raises(AffinityStateLost, match="remove the folder"):
        run_affinity(cfg("lost"), every=2, **quiet)


def test_tag_needs_joint_static_runs(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="joint"):
        run_affinity(tiny_config(tiny_corpus, tmp_path / "r", strategy="alternating"), every=1)


def test_lookaheads_at_learning_rate_zero_are_skipped():
    model, tok = tiny_model()
    _, batch = batch_of(model, tok)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    tag = TagAffinity({t: 1.0 for t in TASKS}, every=1)
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # step 0 of a linear warm-up
    tag(0, model, optimizer, batch, TASKS)
    assert tag.lookaheads == 0 and tag.skipped_lr0 == 1 and not tag.sums
    for group in optimizer.param_groups:
        group["lr"] = 1e-3
    tag(1, model, optimizer, batch, TASKS)
    assert tag.lookaheads == 1 and len(tag.sums) == len(TASKS) ** 2


def test_normalising_by_the_learning_rate_divides_each_lookahead_by_it():
    model, tok = tiny_model()
    _, batch = batch_of(model, tok)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    plain, scaled = TagAffinity({t: 1.0 for t in TASKS}, every=1), TagAffinity({t: 1.0 for t in TASKS}, every=1,
                                                                               normalise_lr=True)  # fmt: skip
    plain(0, model, optimizer, batch, TASKS)
    scaled(0, model, optimizer, batch, TASKS)
    for key, value in plain.sums.items():
        assert scaled.sums[key] == pytest.approx(value / 1e-3, rel=1e-4, abs=1e-6)


def test_lookaheads_run_at_the_runs_precision(monkeypatch):
    """A run stated in fp32 on a machine where auto is bf16 looks ahead in fp32 too, and the other way round."""
    import taskrel.affinity as affinity

    model, tok = tiny_model()
    _, batch = batch_of(model, tok)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    model(batch)["ner"]["loss"].backward()
    optimizer.step()
    optimizer.zero_grad()
    asked = []
    real = affinity.autocast
    monkeypatch.setattr(
        affinity, "autocast", lambda device, precision="auto": asked.append(precision) or real(device, "fp32")
    )
    for precision in ("fp32", "bf16"):
        asked.clear()
        TagAffinity({t: 1.0 for t in TASKS}, every=1, precision=precision)(0, model, optimizer, batch, TASKS)
        assert asked and set(asked) == {precision}
