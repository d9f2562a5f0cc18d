"""``taskrel export --hf``: the NER head as a Hugging Face token classifier that tags as ``taskrel predict``."""

import pytest

from taskrel.cli import main
from taskrel.predict import Tagger

from helpers import SENTENCES, batch_of, overfit, tiny_model

LINES = [" ".join(s.tokens) for s in SENTENCES] + [
    "cancer runs in Breast families .",
    "No HNPCC here",
    "found Breast cancer was found",
]


def valid_bio(tags) -> bool:
    return all(not t.startswith("I-") or (i and tags[i - 1][2:] == t[2:] != "") for i, t in enumerate(tags))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "model"
    model, tok = tiny_model(("ner", "bcls"), dropout=0.0)
    _, batch = batch_of(model, tok)
    overfit(model, batch)
    model.cpu().save(folder, tok, max_length=64, mcls_cap=3)
    return folder


def test_the_exported_pipeline_finds_the_entities_taskrel_predict_finds(trained, tmp_path):
    from transformers import pipeline

    out = tmp_path / "hf"
    assert main(["export", str(trained), str(out), "--hf"]) == 0
    tagger = Tagger(trained, device="cpu")
    hf = pipeline("token-classification", model=str(out), aggregation_strategy="first", device="cpu")
    compared = found = 0
    for result, groups in zip(tagger.tag_text(LINES), hf(LINES)):
        if not valid_bio(result["ner"]):
            continue  # the two group invalid tag sequences differently (taskrel/export.py)
        ours = {(e["start"], e["end"], e["type"]) for e in result["entities"]}
        theirs = {(g["start"], g["end"], g["entity_group"]) for g in groups}
        assert ours == theirs, result["text"]
        compared += 1
        found += len(ours)
    assert compared >= len(SENTENCES) and found >= 2  # the fitted sentences at least, with their entities


def test_export_refuses_what_a_token_classifier_cannot_hold(trained, tmp_path):
    from taskrel.export import ExportError, export_hf

    with pytest.raises(ExportError, match="sentence task"):
        export_hf(trained, tmp_path / "a", task="bcls")
    with pytest.raises(ExportError, match="no task 'mtcls'"):
        export_hf(trained, tmp_path / "b", task="mtcls")
    crf, tok = tiny_model(("ner",), crf=True)
    crf.cpu().save(tmp_path / "crf", tok, max_length=64, mcls_cap=3)
    with pytest.raises(ExportError, match="CRF"):
        export_hf(tmp_path / "crf", tmp_path / "c")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ExportError, match="not empty"):
        export_hf(trained, tmp_path / "full")
