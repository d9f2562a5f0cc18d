"""benchmarks/machine_noise.py: the same runs on two machines, paired seed by seed."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from taskrel.cli import main

from conftest import TINY_RUN

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "machine_noise.py"


def load_script():
    spec = importlib.util.spec_from_file_location("machine_noise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def two_machines(tiny_corpus, tmp_path):
    """bcls alone at seed 1 on 'machine A', and the same run as 'machine B' saw it: one test prediction flipped."""
    a = tmp_path / "a" / "seed1"
    args = ["train", "--data", str(tiny_corpus), "--tasks", "bcls", "--epochs", "1", "--out", str(a)]
    assert main([*args, *TINY_RUN]) == 0
    b = tmp_path / "b" / "seed1"
    shutil.copytree(a, b)
    edit_json(a / "config.json", lambda c: c["resolved"].update(cpu="CPU A", cores=2, native_bf16=False))
    edit_json(b / "config.json", lambda c: c["resolved"].update(cpu="CPU B", cores=2, native_bf16=True))
    lines = (b / "test_predictions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["bcls"] = "0" if first["bcls"] == "1" else "1"
    (b / "test_predictions.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    accuracy = json.loads((a / "metrics.json").read_text())["test"]["bcls"]["accuracy"]
    edit_json(b / "metrics.json", lambda m: m["test"]["bcls"].update(accuracy=accuracy - 0.25))
    return a.parent, b.parent, len(lines)


def test_pairs_each_seed_across_machines_with_its_score_difference_and_labels_changed(two_machines):
    a, b, n = two_machines
    table = load_script().pair_runs(a, b, "bcls")
    assert list(table["seed"]) == [1]
    assert table["machine_a"][0].startswith("CPU A") and table["machine_b"][0].startswith("CPU B")
    assert table["delta"][0] == pytest.approx(-0.25)
    assert table["labels_changed"][0] == pytest.approx(1 / n)


def test_runs_of_other_settings_or_of_one_machine_are_not_a_machine_comparison(two_machines, capsys):
    a, b, _ = two_machines
    script = load_script()
    edit_json(b / "seed1" / "config.json", lambda c: c["resolved"].update(cpu="CPU A", native_bf16=False))
    assert script.pair_runs(a, b, "bcls").empty
    assert "both trained on CPU A" in capsys.readouterr().err
    edit_json(b / "seed1" / "config.json", lambda c: c["train"].update(lr=0.5))
    with pytest.raises(Exception, match="other settings"):
        script.pair_runs(a, b, "bcls")
