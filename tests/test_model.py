import itertools
import json

import pytest
import torch

from taskrel.corpus import Sentence
from taskrel.crf import CRF
from taskrel.data import encode
from taskrel.evaluate import evaluate, predict
from taskrel.model import load
from taskrel.tasks import TASKS

from helpers import DEVICE, SENTENCES, batch_of, overfit, tiny_model


@pytest.mark.parametrize("pooling, crf", [("max", False), ("mean", True), ("cls", False)])
def test_every_trainable_parameter_gets_a_gradient(pooling, crf):
    model, tok = tiny_model(pooling=pooling, crf=crf)
    _, batch = batch_of(model, tok)
    out = model(batch)
    sum(o["loss"] for o in out.values()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not missing


def test_loss_only_with_labels():
    model, tok = tiny_model()
    _, batch = batch_of(model, tok)
    out = model(batch, with_loss=False)
    assert all(set(o) == {"logits"} for o in out.values())
    assert out["ner"]["logits"].shape == (3, 5, 3)  # (rows, words, labels)
    assert out["mcls"]["logits"].shape == (3, 4)  # (sentences, labels)


@pytest.mark.parametrize("crf", [False, True])
def test_save_then_load_gives_identical_outputs(tmp_path, crf):
    model, tok = tiny_model(crf=crf)
    model.eval()
    _, batch = batch_of(model, tok)
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    loaded, tok2, meta = load(tmp_path / "m", DEVICE)
    assert meta["crf"] is crf and meta["tasks"] == ["ner", "mtcls", "bcls", "mcls"]
    assert not list(tmp_path.glob("m/*.bin")) and not list(tmp_path.glob("m/*.pt"))  # no pickle
    with torch.no_grad():
        a, b = model(batch, with_loss=False), loaded(batch, with_loss=False)
    for name in a:
        assert torch.equal(a[name]["logits"], b[name]["logits"])
    assert tok2(["Breast cancer"])["input_ids"] == tok(["Breast cancer"])["input_ids"]


@pytest.mark.parametrize("pooling", ["max", "mean", "cls"])
def test_batch_predictions_equal_one_by_one(pooling):
    model, tok = tiny_model(pooling=pooling, crf=True)
    model.eval()
    enc, batch = batch_of(model, tok)
    with torch.no_grad():
        together = model(batch, with_loss=False)
        for k, sent in enumerate(SENTENCES):
            _, single = batch_of(model, tok, [sent])
            alone = model(single, with_loss=False)
            n = len(sent.tokens)
            torch.testing.assert_close(
                alone["ner"]["logits"][0, :n], together["ner"]["logits"][k, :n], atol=1e-5, rtol=1e-4
            )
            torch.testing.assert_close(alone["mcls"]["logits"][0], together["mcls"]["logits"][k], atol=1e-5, rtol=1e-4)


def test_a_tiny_fixture_can_be_overfit():
    model, tok = tiny_model(dropout=0.0)
    enc, batch = batch_of(model, tok)
    overfit(model, batch)
    scores = evaluate(model, enc, SENTENCES, tok.pad_token_id)
    assert scores["ner"]["f1"] == 1.0 and scores["mtcls"]["f1"] == 1.0
    assert scores["bcls"]["accuracy"] == 1.0 and scores["mcls"]["accuracy"] == 1.0


def test_long_sentences_are_windowed_without_losing_entities():
    model, tok = tiny_model(crf=True)
    words = [f"w{i}" for i in range(40)]
    tags = ["O"] * 40
    tags[35:37] = ["B-Disease", "I-Disease"]  # far beyond the first window
    tags[2] = "B-Disease"
    long = Sentence(tuple(words), tuple(tags))
    enc = encode([long, SENTENCES[0]], tok, model.tasks, max_length=16)
    assert len(enc[0].rows) > 3 and all(len(r) <= 16 for r in enc[0].rows)
    assert sorted(w for ws in enc[0].words for w in ws) == list(range(40))  # every word predicted once
    preds = predict(model, enc, tok.pad_token_id, batch_size=2)
    assert len(preds["ner"][0]) == 40 and preds["bcls"][0] in ("0", "1")
    scores = evaluate(model, enc, [long, SENTENCES[0]], tok.pad_token_id)
    assert scores["ner"]["support"] == 3  # both gold entities of the long sentence, and the short one's


def test_a_sentence_longer_than_the_encoder_gives_no_false_length_warning():
    """Windows handle it; the tokenizer's "longer than the specified maximum sequence length" would mislead."""
    import logging

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    model, tok = tiny_model()
    records, logger = Records(), logging.getLogger("transformers")  # transformers' loggers do not propagate
    logger.addHandler(records)
    try:
        long = Sentence(tuple(f"w{i}" for i in range(tok.model_max_length + 100)))
        enc = encode([long], tok, model.tasks, max_length=64, with_labels=False)
    finally:
        logger.removeHandler(records)
    assert len(enc[0].rows) > 1
    assert not [m for m in records.messages if "longer than the specified maximum" in m]


def test_window_of_one_long_word_and_empty_word():
    model, tok = tiny_model()
    sent = Sentence(("a" * 50, "\u200b", "b"), ("B-Disease", "O", "O"))
    enc = encode([sent], tok, model.tasks, max_length=12)
    assert all(len(r) <= 12 for r in enc[0].rows)
    assert 1 not in [w for ws in enc[0].words for w in ws]  # the zero-width space has no sub-word
    preds = predict(model, enc, tok.pad_token_id)
    assert len(preds["ner"][0]) == 3 and preds["ner"][0][1] == "O"


def test_crf_matches_brute_force():
    torch.manual_seed(0)
    L, W = 3, 4
    crf = CRF(L)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    emissions = torch.randn(2, W, L)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    labels = torch.tensor([[0, 2, 1, 1], [1, 1, 0, -100]])

    def path_score(r, path):
        s = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[r, t, y] for t, y in enumerate(path))
        return s + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))

    nll, best = [], []
    for r, n in enumerate(mask.sum(1).tolist()):
        paths = list(itertools.product(range(L), repeat=n))
        scores = torch.stack([path_score(r, p) for p in paths])
        nll.append(torch.logsumexp(scores, 0) - path_score(r, labels[r, :n].tolist()))
        best.append(list(paths[int(scores.argmax())]))
    torch.testing.assert_close(crf.neg_log_likelihood(emissions, labels, mask), torch.stack(nll).mean())
    assert crf.decode(emissions, mask) == best


@pytest.mark.parametrize("pooling", ["max", "mean", "cls"])
def test_bf16_autocast_path_runs(pooling):
    """The CUDA path trains under bf16 autocast; CPU autocast exercises the same dtype handling."""
    model, tok = tiny_model(pooling=pooling, crf=True)
    _, batch = batch_of(model, tok)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out = model(batch)
    loss = sum(o["loss"] for o in out.values())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cuda_asked_for_without_a_gpu_is_a_clear_error():
    from taskrel.machine import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
            resolve_device("cuda")


def test_hugging_face_refuses_a_taskrel_model_folder_instead_of_loading_random_weights(tmp_path):
    from safetensors.torch import save_model
    from transformers import AutoModel, AutoModelForTokenClassification

    model, tok = tiny_model()
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    with pytest.raises((OSError, ValueError)):
        AutoModelForTokenClassification.from_pretrained(tmp_path / "m")
    # the fine-tuned encoder alone loads with plain transformers, with its trained weights
    encoder = AutoModel.from_pretrained(tmp_path / "m" / "encoder")
    assert torch.equal(encoder.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight.cpu())
    # folders written before the encoder had its own folder (format 1, under both weight-file names) still load
    for name in ("taskrel.safetensors", "model.safetensors"):
        old = tmp_path / name
        old.mkdir()
        save_model(model, str(old / name))
        model.encoder.config.save_pretrained(old)
        tok.save_pretrained(old)
        meta = model.meta(64, 3)
        del meta["format"], meta["heads"]
        (old / "taskrel.json").write_text(json.dumps(meta))
        loaded, _, _ = load(old, DEVICE)
        assert torch.equal(loaded.head("ner").classifier.weight, model.head("ner").classifier.weight)


def test_a_model_loads_from_its_own_description_even_for_a_task_this_taskrel_lacks(tmp_path, monkeypatch):
    model, tok = tiny_model(("ner", "bcls"))
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    meta = json.loads((tmp_path / "m" / "taskrel.json").read_text())
    assert meta["format"] == 2 and meta["heads"]["bcls"] == {"task": "bcls", "level": "sentence", "labels": ["0", "1"]}
    monkeypatch.delitem(TASKS, "bcls")  # a model trained with a task this installation does not have
    loaded, _, _ = load(tmp_path / "m", DEVICE)
    assert loaded.tasks["bcls"].labels == ("0", "1")
    with pytest.raises(ValueError, match="cannot be derived"):
        loaded.tasks["bcls"].derive(("O",))
    meta["format"] = 99
    (tmp_path / "m" / "taskrel.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="newer taskrel"):
        load(tmp_path / "m", DEVICE)


def test_the_weights_file_has_the_mode_of_the_rest_of_the_folder(tmp_path):
    model, tok = tiny_model()
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    mode = lambda f: (tmp_path / "m" / f).stat().st_mode & 0o777  # noqa: E731
    assert mode("heads.safetensors") == mode("taskrel.json") == mode("encoder/model.safetensors")


# ---- the model contract, for every task in the registry: a new task entry gets these for free


@pytest.mark.parametrize("task", sorted(TASKS))
def test_contract_every_task_gets_gradients_saves_and_batches(task, tmp_path):
    model, tok = tiny_model((task,), dropout=0.0)
    _, batch = batch_of(model, tok)
    model(batch)[task]["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head(task).parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())

    model.eval()
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    loaded, _, meta = load(tmp_path / "m", DEVICE)
    assert meta["tasks"] == [task] and meta["labels"][task] == list(model.tasks[task].labels)
    with torch.no_grad():
        together = model(batch, with_loss=False)[task]["logits"]
        assert torch.equal(together, loaded(batch, with_loss=False)[task]["logits"])
        for k, sent in enumerate(SENTENCES):
            _, single = batch_of(model, tok, [sent])
            alone = model(single, with_loss=False)[task]["logits"][0]
            mine = together[k, : len(sent.tokens)] if model.tasks[task].is_token else together[k]
            torch.testing.assert_close(
                alone[: len(sent.tokens)] if alone.dim() > 1 else alone, mine, atol=1e-5, rtol=1e-4
            )


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda m: (m / "taskrel.json").write_text("{not json"), "not a valid taskrel model folder"),
        (lambda m: (m / "taskrel.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda m: (m / "heads.safetensors").write_bytes(b"\x00" * 64), "not a valid taskrel model folder"),
        (lambda m: (m / "heads.safetensors").unlink(), "not a valid taskrel model folder"),
        (lambda m: (m / "encoder" / "model.safetensors").write_bytes(b"junk"), "not a valid taskrel model folder"),
        (lambda m: [f.unlink() for f in (m / "encoder").glob("tokenizer*")], "not a valid taskrel model folder"),
        (
            lambda m: (m / "taskrel.json").write_text(
                (m / "taskrel.json").read_text().replace('"B-Disease"', '"B-Chemical"')
            ),
            "checksum",
        ),
        (
            lambda m: (m / "taskrel.json").write_text((m / "taskrel.json").read_text().replace('"max"', '"median"')),
            "pooling",
        ),
    ],
    ids=["not-json", "not-object", "random-heads", "no-heads", "random-encoder", "no-tokenizer", "renamed-labels",
         "bad-pooling"],
)  # fmt: skip
def test_a_damaged_or_edited_model_folder_is_refused_clearly(tmp_path, tamper, reason):
    from taskrel.model import ModelFolderError

    model, tok = tiny_model()
    model.save(tmp_path / "m", tok, max_length=64, mcls_cap=3)
    tamper(tmp_path / "m")
    with pytest.raises(ModelFolderError, match=reason):
        load(tmp_path / "m", DEVICE)
