import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models run much faster single-threaded

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(os.environ.get("TASKREL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run slow tests (real encoder or corpora)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_corpus():
    return FIXTURES / "tiny"


def write_corpus(folder: Path, train: str, devel: str | None = None, test: str | None = None) -> Path:
    """A corpus folder from CoNLL texts (devel and test default to train)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("devel", devel or train), ("test", test or train)):
        (folder / f"{name}.tsv").write_text(text)
    return folder


def conll(*sentences: str) -> str:
    """``conll("a/O b/B-X", ...)``: one sentence per string of word/tag pairs."""
    out = []
    for s in sentences:
        out += [tok.rsplit("/", 1)[0] + "\t" + tok.rsplit("/", 1)[1] for tok in s.split()] + [""]
    return "\n".join(out) + "\n"


@pytest.fixture
def chem_corpus(tmp_path):
    """A second corpus, of another entity type, for cross-corpus tasks."""
    return write_corpus(
        tmp_path / "chem",
        conll(
            "aspirin/B-Chemical reduces/O fever/O ./O",
            "sodium/B-Chemical chloride/I-Chemical dissolves/O ./O",
            "the/O dose/O was/O low/O",
            "caffeine/B-Chemical and/O ethanol/B-Chemical interact/O",
        ),
        conll("ibuprofen/B-Chemical helps/O", "nothing/O here/O"),
        conll("lithium/B-Chemical carbonate/I-Chemical is/O used/O", "rest/O well/O"),
    )
