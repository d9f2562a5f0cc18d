import json

import pytest

from taskrel.cli import main
from taskrel.corpus import Sentence, load_corpus
from taskrel.tasks import TASKS, Task, build_tasks, label_counts, mtcls_tags

from conftest import SHARED_DATA

LABELS = ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]


def derive(name, tags, **options):
    return build_tasks([name], LABELS, options)[name].derive(tuple(tags))


@pytest.mark.parametrize(
    "tags, mtcls, bcls, mcls",
    [
        # one multi-word and one single-word entity
        (["B-Disease", "I-Disease", "O", "B-Disease"], ["B-Multi", "I-Multi", "O", "B-Single"], "1", "2"),
        # adjacent entities of one type stay two entities
        (["B-Disease", "B-Disease", "I-Disease"], ["B-Single", "B-Multi", "I-Multi"], "1", "2"),
        # I- without B- starts no entity in strict IOB2 (corpora are normalised before this)
        (["O", "I-Disease", "O"], ["O", "O", "O"], "0", "0"),
        # multi-type: a type change splits entities
        (["B-Chemical", "I-Chemical", "B-Disease", "O"], ["B-Multi", "I-Multi", "B-Single", "O"], "1", "2"),
        # single-token sentences
        (["B-Disease"], ["B-Single"], "1", "1"),
        (["O"], ["O"], "0", "0"),
        # 3+ entities share one class
        (
            ["B-Disease", "O", "B-Disease", "O", "B-Chemical", "B-Chemical"],
            ["B-Single", "O", "B-Single", "O", "B-Single", "B-Single"],
            "1",
            "3",
        ),
    ],
)
def test_derived_labels(tags, mtcls, bcls, mcls):
    assert derive("ner", tags) == tags
    assert derive("mtcls", tags) == mtcls
    assert derive("bcls", tags) == bcls
    assert derive("mcls", tags) == mcls


def test_mtcls_counts_words_not_subwords():
    # HNPCC splits into several sub-words, but is one word: B-Single
    assert mtcls_tags(("B-Disease",)) == ["B-Single"]


def test_mcls_cap_is_a_parameter():
    tags = ["B-Disease", "O", "B-Disease", "O", "B-Disease", "O", "B-Disease", "O", "B-Disease"]
    assert derive("mcls", tags) == "3"
    assert derive("mcls", tags, mcls_cap=5) == "5"
    assert derive("mcls", tags[:3], mcls_cap=5) == "2"
    assert build_tasks(["mcls"], LABELS, {"mcls_cap": 5})["mcls"].labels == ("0", "1", "2", "3", "4", "5")


def test_a_new_task_is_one_registry_entry(monkeypatch):
    monkeypatch.setitem(
        TASKS,
        "first",
        lambda labels, opts: Task("first", "sentence", ("O", "E"), lambda t: "E" if t[0] != "O" else "O"),
    )
    tasks = build_tasks(["ner", "first"], LABELS)
    assert list(tasks) == ["ner", "first"]
    counts = label_counts(tasks["first"], [Sentence(("a",), ("B-Disease",)), Sentence(("b",), ("O",))])
    assert counts == {"O": 1, "E": 1}


def test_unknown_and_repeated_tasks():
    with pytest.raises(ValueError, match="unknown task"):
        build_tasks(["ner", "pos"], LABELS)
    with pytest.raises(ValueError, match="repeated"):
        build_tasks(["ner", "ner"], LABELS)


def test_stats_json_shape(tiny_corpus, capsys):
    assert main(["stats", "--data", str(tiny_corpus), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == {"train", "devel", "test"}
    train = stats["train"]
    assert train["ner"] == {"O": 49, "B-Disease": 9, "I-Disease": 9}
    assert train["mtcls"] == {"O": 49, "B-Multi": 6, "I-Multi": 9, "B-Single": 3}
    assert train["bcls"] == {"0": 3, "1": 5}
    assert train["mcls"] == {"0": 3, "1": 2, "2": 2, "3": 1}


@pytest.mark.skipif(not (SHARED_DATA / "NCBI-disease").is_dir(), reason="benchmark corpora not available")
def test_reproduces_the_authors_ncbi_labels():
    """The authors' released auxiliary labels for NCBI-disease train.

    bCLS 2,501 / 2,923 and mCLS 2,501 / 1,677 / 706 / 540.
    """
    corpus = load_corpus(SHARED_DATA / "NCBI-disease")
    assert sum(len(s) for s in corpus.splits.values()) == 7287
    tasks = build_tasks(["bcls", "mcls"], corpus.tag_set)
    train = corpus.splits["train"]
    assert label_counts(tasks["bcls"], train) == {"0": 2501, "1": 2923}
    assert label_counts(tasks["mcls"], train) == {"0": 2501, "1": 1677, "2": 706, "3": 540}
