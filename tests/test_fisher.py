import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from taskrel.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from taskrel.data import encode
from taskrel.embed import EmbedConfig, load_embeddings
from taskrel.embed import embed as embed_tasks
from taskrel.fisher import COMPONENTS, fisher_embedding
from taskrel.similarity import analyse, cosine_matrix, nn_purity, task2vec_matrix
from taskrel.train import train

from helpers import DEVICE, SENTENCES, batch_of, tiny_model

ALL = COMPONENTS


def embed(model, tok, spec, sentences=SENTENCES, max_length=64, **kw):
    enc = encode(sentences, tok, model.tasks, max_length)
    return fisher_embedding(model, enc, spec, tok.pad_token_id, DEVICE, **{"components": ALL, **kw})


def close(a, b, rtol=1e-4):
    assert set(a) == set(b)
    for c in a:
        np.testing.assert_allclose(a[c], b[c], rtol=rtol, atol=1e-7 * float(np.abs(b[c]).max()))


@pytest.mark.parametrize("spec", ["ner", "mtcls", "bcls", "mcls"])
def test_vectorised_equals_the_per_example_loop(spec):
    model, tok = tiny_model()
    close(embed(model, tok, spec, method="vmap", batch_size=3), embed(model, tok, spec, method="loop", batch_size=1))


@pytest.mark.parametrize("label_mode", ["empirical", "true"])
def test_invariant_to_the_batch_size(label_mode):
    model, tok = tiny_model()
    one = embed(model, tok, "ner", batch_size=1, label_mode=label_mode)
    three = embed(model, tok, "ner", batch_size=3, label_mode=label_mode)
    two = embed(model, tok, "ner", batch_size=2, label_mode=label_mode, method="loop")
    close(one, three)
    close(one, two)


def test_shapes_and_what_the_head_component_is():
    model, tok = tiny_model()
    emb = embed(model, tok, "mcls")
    layers, hidden = model.encoder.config.num_hidden_layers, model.encoder.config.hidden_size
    assert emb["layer_outputs"].shape == (layers, hidden) and emb["head"].shape == (hidden,)
    n_encoder = sum(p.numel() for n, p in model.encoder.named_parameters() if not n.startswith("embeddings."))
    assert emb["encoder"].shape == (n_encoder,)
    assert all((v >= 0).all() and v.sum() > 0 for v in emb.values())


def test_deterministic_with_a_seed_and_true_fisher_depends_on_it():
    model, tok = tiny_model()
    a = embed(model, tok, "ner", label_mode="true", seed=3)
    b = embed(model, tok, "ner", label_mode="true", seed=3)
    c = embed(model, tok, "ner", label_mode="true", seed=4)
    gold = embed(model, tok, "ner")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.allclose(a["head"], c["head"]) and not np.allclose(a["head"], gold["head"])


def test_eval_mode_is_enforced_and_the_mode_restored():
    model, tok = tiny_model(dropout=0.5)
    model.eval()
    reference = embed(model, tok, "bcls")
    model.train()  # dropout on: an embedding computed in this mode would be random
    got = embed(model, tok, "bcls")
    assert model.training
    close(got, reference, rtol=1e-6)


def test_long_sentences_split_into_windows_take_the_loop():
    model, tok = tiny_model()
    assert any(len(e.rows) > 1 for e in encode(SENTENCES, tok, model.tasks, 12))
    short = embed(model, tok, "ner", max_length=12, method="vmap", batch_size=3)  # some sentences need 2 windows
    loop = embed(model, tok, "ner", max_length=12, method="loop", batch_size=1)
    close(short, loop)


def test_crf_heads_are_refused():
    model, tok = tiny_model(crf=True)
    with pytest.raises(ValueError, match="CRF"):
        embed(model, tok, "ner")


def test_similarity_measures_and_purity_by_hand():
    x = np.array([[1.0, 0.0, 1.0], [2.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.1, 1.0, 0.0]])
    cos = cosine_matrix(x)
    assert cos[0, 1] == pytest.approx(1) and cos[0, 2] == pytest.approx(0)
    t2v = task2vec_matrix(x)
    assert np.allclose(t2v, t2v.T) and np.allclose(np.diag(t2v), 1) and (t2v <= 1 + 1e-12).all()
    assert t2v[0, 1] == pytest.approx(1)  # proportional vectors: Fa/(Fa+Fb) and Fb/(Fa+Fb) are parallel
    purity, chance = nn_purity(cos, ["a", "a", "b", "b"])
    assert purity == 1 and chance == pytest.approx(1 / 3)
    purity, _ = nn_purity(cos, ["a", "b", "a", "b"])
    assert purity == 0


def test_purity_p_is_small_only_for_a_grouping_the_neighbours_follow():
    from taskrel.similarity import purity_p

    # 12 tasks in four tight clusters of three: the neighbours follow the clusters exactly
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    x = np.repeat(centres, 3, axis=0) + 0.01 * rng.normal(size=(12, 8))
    sim = cosine_matrix(x)
    clusters = [i // 3 for i in range(12)]
    # every random assignment of 4 groups of 3 reaching purity 1 is one of 4!·(3!)^4 / 12! ≈ 1 in 15,400
    assert purity_p(sim, clusters, samples=2000) == pytest.approx(1 / 2001)
    assert purity_p(sim, [i % 4 for i in range(12)], samples=2000) == pytest.approx(1.0)  # purity 0: always reached
    across = [i % 3 for i in range(12)]  # a grouping that cuts across the clusters
    assert purity_p(sim, across, samples=2000) > 0.5


def test_embed_pipeline_trains_models_resumes_and_analyses(tiny_corpus, chem_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TASKREL_DATA", str(tmp_path))
    tiny = tmp_path / "tiny"
    shutil.copytree(tiny_corpus, tiny)
    base = RunConfig(DataConfig(""), ModelConfig("tiny"), TrainConfig(epochs=1, batch_size=4, lr=1e-3, threads=1))
    tasks = ["tiny:ner", "tiny:bcls", "chem:ner", "chem:bcls"]
    ec = EmbedConfig(base, tasks, examples=3, components=["layer_outputs", "head"])
    logs = []
    meta = embed_tasks(ec, tmp_path / "emb", progress=False, log=logs.append)
    emb = load_embeddings(tmp_path / "emb")
    assert emb.tasks == tasks and emb.kinds() == ["ner", "bcls", "ner", "bcls"]
    assert emb.corpora() == ["tiny", "tiny", "chem", "chem"]
    assert emb.vectors("head").shape == (4, 32) and emb.layers().shape == (4, 2, 32)
    info = meta["per_task"]["chem:ner"]
    assert info["examples"] == 3 and info["fisher_seconds"] > 0 and info["train_epoch_seconds_same_sentences"] > 0
    assert (tmp_path / "emb/models/chem.ner/model/taskrel.json").is_file()
    # run again, with a given model for one task: nothing is recomputed
    again = EmbedConfig(base, tasks, examples=3, components=["layer_outputs", "head"])
    logs.clear()
    embed_tasks(again, tmp_path / "emb", progress=False, log=logs.append)
    assert sum("done" in line for line in logs) == 4
    purity = analyse(emb, log=lambda *_: None)
    assert len(purity) == 2 * 2 and purity["chance_kind"].eq(1 / 3).all() and purity["chance_level"].eq(1 / 3).all()
    # the shuffled-label control: same shapes, other vectors, reported beside every purity
    assert emb.has_control and emb.vectors("head", control=True).shape == (4, 32)
    assert not np.allclose(emb.vectors("head", control=True), emb.vectors("head"))
    assert {"control_kind", "control_level", "control_corpus"} <= set(purity.columns)
    # each purity has its permutation p, Holm over the table, and is a finding only if it also beats the control
    for name in ("kind", "level", "corpus"):
        assert purity[f"p_{name}"].between(0, 1).all() and (purity[f"p_adjusted_{name}"] >= purity[f"p_{name}"]).all()
        beats = purity[f"purity_{name}"] > purity[f"control_{name}"]
        assert (purity[f"finding_{name}"] == ((purity[f"p_adjusted_{name}"] < 0.05) & beats)).all()
    assert emb.vectors("layer_outputs").shape == (4, 2 * 32)  # layers concatenated by default
    emb.meta["layer_reduce"] = "mean"  # the paper's Figure 6: the mean over layers
    assert np.allclose(emb.vectors("layer_outputs"), emb.layers().mean(1))
    assert emb.levels() == ["token", "sentence", "token", "sentence"]
    sims = pd.read_csv(tmp_path / "emb/similarity.csv")
    assert len(sims) == 2 * 2 * 4 * 3
    for f in ("similarity-head.png", "map-head-tsne.png", "map-layer_outputs-layers-mds.png"):
        assert (tmp_path / "emb" / f).stat().st_size > 0
    with pytest.raises(ConfigError, match="models given for tasks"):
        EmbedConfig(base, tasks, models={"other:ner": "x"})


def _trained_ner_model(corpus, folder):
    """A finished tiny NER-alone run in ``folder``; the base settings of an embedding study that reads it."""
    data = DataConfig(str(corpus))
    train(RunConfig(data, ModelConfig("tiny", ["ner"]), TrainConfig(epochs=1, threads=1), str(folder)), progress=False)
    return RunConfig(data, ModelConfig("tiny"), TrainConfig(threads=1))


def test_embed_uses_a_given_model(tiny_corpus, tmp_path):
    base = _trained_ner_model(tiny_corpus, tmp_path / "r")
    ec = EmbedConfig(base, ["ner"], examples=2, models={"ner": str(tmp_path / "r/model")})
    meta = embed_tasks(ec, tmp_path / "emb", progress=False, log=lambda *_: None)
    assert meta["per_task"]["ner"]["model"] == str(tmp_path / "r/model") and not (tmp_path / "emb/models").exists()
    assert meta["per_task"]["ner"]["fisher_vs_epoch"] is None  # no training epoch was timed here


def test_the_control_shuffles_labels_among_the_same_sentences():
    from taskrel.embed import shuffled_labels

    model, tok = tiny_model(("ner", "bcls"))
    enc, _ = batch_of(model, tok)
    for head, is_token in (("ner", True), ("bcls", False)):
        shuffled = shuffled_labels(enc, head, is_token, seed=1)
        assert [e.rows for e in shuffled] == [e.rows for e in enc]  # the text is the same

        def flat(items, head=head):
            return sorted(np.concatenate([np.atleast_1d(e.labels[head]) for e in items]).tolist())

        assert flat(shuffled) == flat(enc)  # the same labels, moved
        assert [np.size(e.labels[head]) for e in shuffled] == [np.size(e.labels[head]) for e in enc]
    ner = [e.labels["ner"] for e in shuffled_labels(enc, "ner", True, seed=1)]
    assert ner != [e.labels["ner"] for e in enc]
    # and it changes the head embedding
    a = embed(model, tok, "ner", components=("head",))
    items = shuffled_labels(encode(SENTENCES, tok, {"ner": model.tasks["ner"]}, 64), "ner", True, seed=1)
    b = fisher_embedding(model, items, "ner", tok.pad_token_id, DEVICE, ("head",))
    assert not np.allclose(a["head"], b["head"])


def test_the_taskemb_style_equals_a_hand_computation():
    model, tok = tiny_model(("ner",))
    enc = encode(SENTENCES, tok, model.tasks, 64)
    got = fisher_embedding(model, enc, "ner", tok.pad_token_id, DEVICE, ("layer_outputs", "head"), style="taskemb",
                           batch_size=len(enc))  # fmt: skip
    # by hand: one batch, gradient of the batch-mean loss, retained on every layer output
    from taskrel.data import collate, to_device

    batch = to_device(collate(enc, model.tasks, tok.pad_token_id), DEVICE)
    model.train()
    torch.manual_seed(1)  # the style's seeded dropout draw (seed=1)
    out = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    states = out.hidden_states[1:]
    for s in states:
        s.retain_grad()
    model.zero_grad()
    model.task_outputs(states[-1], batch, ["ner"])["ner"]["loss"].backward()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    hand = torch.stack([(s.grad * mask).sum((0, 1)) ** 2 for s in states]) / mask.sum() / len(enc)
    np.testing.assert_allclose(got["layer_outputs"], hand.detach().cpu().numpy(), rtol=1e-4, atol=1e-12)
    head = model.head("ner").classifier.weight.grad.pow(2).sum(0) / len(enc)
    np.testing.assert_allclose(got["head"], head.cpu().numpy(), rtol=1e-4, atol=1e-12)
    # unlike the default style, it depends on the batch size
    one = fisher_embedding(model, enc, "ner", tok.pad_token_id, DEVICE, ("head",), style="taskemb", batch_size=1)
    assert not np.allclose(one["head"], got["head"])
    with pytest.raises(ValueError, match="gold labels"):
        fisher_embedding(model, enc, "ner", tok.pad_token_id, DEVICE, ("head",), style="taskemb", label_mode="true")


def test_fisher_sentences_come_from_the_models_training_subset(tiny_corpus, tmp_path):
    from taskrel.sources import load_sources

    base = RunConfig(
        DataConfig(str(tiny_corpus), train_fraction=0.5), ModelConfig("tiny"), TrainConfig(epochs=1, threads=1)
    )
    subset = next(iter(load_sources(RunConfig(base.data, ModelConfig("tiny", ["ner"]), TrainConfig())).values()))
    kw = dict(examples=1000, components=["head"], control=False)
    trained = embed_tasks(EmbedConfig(base, ["ner"], **kw), tmp_path / "a", progress=False, log=lambda *_: None)
    every = EmbedConfig(base, ["ner"], sentences="all", **kw)
    everything = embed_tasks(every, tmp_path / "b", progress=False, log=lambda *_: None)
    assert trained["per_task"]["ner"]["examples"] == len(subset.train) < len(subset.corpus.splits["train"])
    assert everything["per_task"]["ner"]["examples"] == len(subset.corpus.splits["train"])
    assert trained["sentences"] == "trained" and everything["sentences"] == "all"


def test_a_given_model_whose_weights_are_gone_is_trained_again_with_its_settings(tiny_corpus, tmp_path):
    """A fresh checkout restores finished runs without their weights (``taskrel restore``): an embedding study
    that reads another study's models trains the same settings again instead of failing, and on the same
    machine gets the same model, so the same embedding."""
    import shutil

    base = _trained_ner_model(tiny_corpus, tmp_path / "r")
    ec = EmbedConfig(base, ["ner"], examples=2, models={"ner": str(tmp_path / "r/model")}, control=False)
    embed_tasks(ec, tmp_path / "first", progress=False, log=lambda *_: None)
    shutil.rmtree(tmp_path / "r/model")
    said = []
    after = embed_tasks(ec, tmp_path / "again", progress=False, log=said.append)
    assert any("has no weights" in line for line in said)
    assert after["per_task"]["ner"]["model"] == str(tmp_path / "again/models/ner/model")
    a, b = np.load(tmp_path / "first/embeddings.npz"), np.load(tmp_path / "again/embeddings.npz")
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    shutil.rmtree(tmp_path / "r")  # no run there at all: an error naming the folder, as before
    with pytest.raises((ConfigError, FileNotFoundError, OSError)):
        embed_tasks(ec, tmp_path / "none", progress=False, log=lambda *_: None)


def test_further_styles_embed_the_same_models_in_the_same_pass(tiny_corpus, tmp_path, monkeypatch):
    import taskrel.train
    from taskrel.embed import analyse_styles
    from taskrel.report import embed_blocks

    trained, real = [], taskrel.train.train
    monkeypatch.setattr(taskrel.train, "train", lambda cfg, **kw: trained.append(cfg.out) or real(cfg, **kw))

    base = RunConfig(DataConfig(str(tiny_corpus)), ModelConfig("tiny"), TrainConfig(epochs=1, batch_size=4, threads=1))
    tasks = ["ner", "bcls"]
    ec = EmbedConfig(base, tasks, examples=3, components=["head"], also_styles=["taskemb"])
    embed_tasks(ec, tmp_path / "emb", progress=False, log=lambda *_: None)
    assert len(trained) == len(tasks)  # one model per task serves both styles
    both = load_embeddings(tmp_path / "emb"), load_embeddings(tmp_path / "emb" / "taskemb")
    assert [e.meta["style"] for e in both] == ["taskrel", "taskemb"] and both[0].meta["also_styles"] == ["taskemb"]
    assert not np.allclose(both[0].vectors("head"), both[1].vectors("head"))
    # the taskemb folder holds what a separate taskemb pass over the same models gives
    models = {t: both[0].meta["per_task"][t]["model"] for t in tasks}
    alone = EmbedConfig(base, tasks, examples=3, components=["head"], style="taskemb", models=models)
    embed_tasks(alone, tmp_path / "alone", progress=False, log=lambda *_: None)
    np.testing.assert_allclose(load_embeddings(tmp_path / "alone").vectors("head"), both[1].vectors("head"))
    np.testing.assert_allclose(
        load_embeddings(tmp_path / "alone").vectors("head", control=True), both[1].vectors("head", control=True)
    )
    # nothing is recomputed on a second pass; a style folder lost since is computed again, from the same models
    shutil.rmtree(tmp_path / "emb" / "taskemb")
    stamps = lambda: sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "emb/models").rglob("*.safetensors"))  # noqa: E731
    before = stamps()
    embed_tasks(ec, tmp_path / "emb", progress=False, log=lambda *_: None)
    assert len(before) >= len(tasks) and stamps() == before  # the models were read, not trained again
    np.testing.assert_allclose(load_embeddings(tmp_path / "emb" / "taskemb").vectors("head"), both[1].vectors("head"))
    assert set(analyse_styles(ec, tmp_path / "emb")) == {"taskrel", "taskemb"}
    titles = [b[1] for b in embed_blocks(tmp_path / "emb") if b[0] == "h2" and b[1].startswith("Fisher")]
    assert titles == ["Fisher task embeddings: emb, taskrel Fisher", "Fisher task embeddings: emb, taskemb Fisher"]
    with pytest.raises(ConfigError, match="also_styles"):
        EmbedConfig(base, tasks, also_styles=["taskrel"])
