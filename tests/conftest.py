import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models run much faster single-threaded

FIXTURES = Path(__file__).parent / "fixtures"
# CLI flags of a fast tiny-encoder run, shared by the CLI tests
# (TASKREL_TEST_DEVICE=cuda runs them on the GPU: benchmarks/gpu/run.sh)
TINY_RUN = ["--encoder", "tiny", "--threads", "1", "--no-progress", "--lr", "1e-3", "--batch-size", "4"]
TINY_RUN += ["--device", os.environ.get("TASKREL_TEST_DEVICE", "cpu")]
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


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a Unix socket (no TCP); skipped where the server is not installed.

    ``.ci/run`` installs Debian's postgresql package. PostgreSQL refuses to run as
    root, so as root the server runs as the ``postgres`` user.
    """
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed")
    pytest.importorskip("psycopg2")
    bindir = Path(bins[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = tempfile.mkdtemp(prefix="taskrel-pg-")
    if as_user:
        shutil.chown(data, "postgres")
    port = "54329"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", data, "-A", "trust", "-U", "taskrel")
    opts = f"-p {port} -k {data} -c listen_addresses=''"
    run(str(bindir / "pg_ctl"), "-D", data, "-o", opts, "-l", f"{data}/log", "-w", "start")
    try:
        run(str(bindir / "createdb"), "-h", data, "-p", port, "-U", "taskrel", "grid")
        yield f"postgresql+psycopg2://taskrel@/grid?host={data}&port={port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)
