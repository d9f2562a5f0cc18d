import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from taskrel.evaluate import entity_scores, sentence_scores

GOLD = [["B-D", "I-D", "O", "B-C"], ["O", "B-D", "O"], ["B-C", "I-C", "I-C"]]
PRED = [["B-D", "I-D", "O", "O"], ["O", "B-D", "I-D"], ["I-C", "I-C", "I-C"]]


def test_hand_computed_strict_scores():
    # gold: D(0,2) C(3) | D(1) | C(0,3)  -> 4 entities
    # pred: D(0,2)      | D(1,3)         | (no entity: strict IOB2 ignores a leading I-)  -> 2 entities
    # correct: D(0,2) only
    s = entity_scores(GOLD, PRED)
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["recall"] == pytest.approx(1 / 4)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert s["support"] == 4
    assert s["per_type"]["D"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert s["per_type"]["C"]["f1"] == 0.0


def test_matches_seqeval_strict_not_default_mode():
    s = entity_scores(GOLD, PRED)
    assert s["f1"] == pytest.approx(f1_score(GOLD, PRED, mode="strict", scheme=IOB2))
    assert s["precision"] == pytest.approx(precision_score(GOLD, PRED, mode="strict", scheme=IOB2))
    assert s["recall"] == pytest.approx(recall_score(GOLD, PRED, mode="strict", scheme=IOB2))
    # seqeval's default (conlleval) mode would count I-C I-C I-C as a match
    assert f1_score(GOLD, PRED) > s["f1"]


def test_no_predictions_scores_zero():
    s = entity_scores([["B-X"]], [["O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)


def test_sentence_scores():
    s = sentence_scores(["0", "1", "1", "2"], ["0", "1", "0", "2"], ["0", "1", "2", "3"])
    assert s["accuracy"] == 0.75
    # per-class F1: 0 -> 2/3, 1 -> 2/3, 2 -> 1, 3 -> 0 (absent everywhere)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
