"""Opt-in tests with the real MiniLM encoder (``pytest --runslow``, or ``make test-slow``)."""

import json

import pytest

from taskrel.cli import main

from conftest import SHARED_DATA

pytestmark = pytest.mark.slow


def test_minilm_trains_loads_and_predicts(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_corpus),
                "--encoder",
                "minilm",
                "--epochs",
                "1",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    meta = json.loads((run / "model" / "taskrel.json").read_text())
    config = json.loads((run / "model" / "config.json").read_text())
    assert meta["tasks"] == ["ner", "mtcls", "bcls", "mcls"] and config["hidden_size"] == 384
    text = tmp_path / "in.txt"
    text.write_text("Hereditary breast cancer runs in families.\n")
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "model"),
                "--input",
                str(text),
                "--output",
                str(tmp_path / "o.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )


@pytest.mark.skipif(not (SHARED_DATA / "NCBI-disease").is_dir(), reason="benchmark corpora not available")
def test_minilm_learns_ncbi_disease(tmp_path):
    """10% of NCBI-disease, 2 epochs: NER must be clearly learnt (dev F1 well above 0)."""
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(SHARED_DATA / "NCBI-disease"),
        "--tasks",
        "ner",
        "--train-fraction",
        "0.1",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-4",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["ner"]["f1"] > 0.2
