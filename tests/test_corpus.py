import pytest

from taskrel.corpus import (
    CorpusError,
    Sentence,
    entity_spans,
    load_corpus,
    read_conll,
    resolve_data,
    split_words,
    subsample,
    to_iob2,
)

from conftest import conll, write_corpus


def test_iob1_and_iobes_are_normalised_to_iob2():
    assert to_iob2(["I-X", "I-X", "O", "I-X"]) == ["B-X", "I-X", "O", "B-X"]
    # IOB1: B- only separates two adjacent entities of one type
    assert to_iob2(["I-X", "I-X", "B-X", "I-X"]) == ["B-X", "I-X", "B-X", "I-X"]
    # a type change starts a new entity
    assert to_iob2(["I-X", "I-Y"]) == ["B-X", "B-Y"]
    # IOBES
    assert to_iob2(["B-X", "I-X", "E-X", "S-X", "S-Y", "O"]) == ["B-X", "I-X", "I-X", "B-X", "B-Y", "O"]
    assert to_iob2(["E-X", "I-X"]) == ["B-X", "B-X"]


def test_entity_spans_are_strict():
    assert entity_spans(["B-X", "I-X", "O", "B-Y", "B-Y", "I-Y"]) == [(0, 2, "X"), (3, 4, "Y"), (4, 6, "Y")]
    # an I- with no open entity of its type starts none
    assert entity_spans(["O", "I-X", "I-X"]) == []
    assert entity_spans(["B-X", "I-Y"]) == [(0, 1, "X")]


def test_reads_columns_docstart_spaces_and_extra_columns(tmp_path):
    f = tmp_path / "a.conll"
    f.write_text("-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nGerman JJ I-MISC\ncall NN O\n")
    sents = read_conll(f)
    assert [s.tokens for s in sents] == [("EU", "rejects"), ("German", "call")]
    assert [s.tags for s in sents] == [("B-ORG", "O"), ("B-MISC", "O")]
    assert sents[1].where(1) == f"{f}:7"


def test_crlf_and_missing_final_blank_line(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("a\tO\r\nb\tB-X\r\n\r\nc\tI-X")
    assert [s.tags for s in read_conll(f)] == [("O", "B-X"), ("B-X",)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\tO\nb\tO\tO\n", "a.tsv:2: found 3 columns; expected 2"),
        ("a\tO\nb\t\n", "a.tsv:2: empty tag"),
        ("a\tO\nb\tX-Disease\n", "a.tsv:2: tag 'X-Disease' has unknown prefix 'X'"),
        ("a\tO\nb\tB-\n", "a.tsv:2: tag 'B-' has unknown prefix"),
        ("abc\n", "a.tsv:1: found 1 column"),
        ("", "a.tsv: empty file"),
        ("\n\n-DOCSTART-\tO\n\n", "a.tsv: empty file"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "a.tsv"
    f.write_text(content)
    with pytest.raises(CorpusError, match=message.replace("(", r"\(")):
        read_conll(f)


def test_non_utf8_names_line(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_bytes(b"a\tO\n\ncaf\xe9\tO\n")
    with pytest.raises(CorpusError, match=r"a.tsv:3: byte b'\\xe9' at column 4 is not valid UTF-8"):
        read_conll(f)


def test_missing_split(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tO\n")
    (tmp_path / "dev.txt").write_text("a\tO\n")
    with pytest.raises(CorpusError, match="missing the test split; expected test"):
        load_corpus(tmp_path)


def test_dev_alias_and_extensions(tmp_path):
    (tmp_path / "train.conll").write_text("a\tB-X\n")
    (tmp_path / "dev.txt").write_text("a\tB-X\n")
    (tmp_path / "test.tsv").write_text("a\tO\n")
    c = load_corpus(tmp_path)
    assert set(c.splits) == {"train", "devel", "test"} and c.tag_set == ["O", "B-X", "I-X"]


def test_unseen_tag_is_an_error_or_mapped_to_o(tmp_path):
    root = write_corpus(tmp_path / "c", conll("a/B-X b/O"), conll("a/B-X b/B-Y c/I-Y"))
    with pytest.raises(CorpusError, match=r"devel.tsv:2: tag 'B-Y' never occurs in the training split"):
        load_corpus(root)
    with pytest.warns(UserWarning, match="2 tags unseen in train were mapped to O"):
        c = load_corpus(root, unseen_tags="o")
    assert c.splits["devel"][0].tags == ("B-X", "O", "O")


def test_multi_type_corpus(tmp_path):
    root = write_corpus(tmp_path / "c", conll("aspirin/B-Chemical causes/O asthma/B-Disease attacks/I-Disease"))
    assert load_corpus(root).tag_set == ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]


def test_resolve_data_by_name(tmp_path, monkeypatch):
    write_corpus(tmp_path / "NCBI", conll("a/O"))
    monkeypatch.setenv("TASKREL_DATA", str(tmp_path))
    assert resolve_data("NCBI") == tmp_path / "NCBI"
    with pytest.raises(CorpusError, match="corpus 'nope' not found"):
        resolve_data("nope")


def test_subsample_is_seeded_and_nested():
    items = list(range(1000))
    s10, s25, s50 = (subsample(items, f, seed=3) for f in (0.1, 0.25, 0.5))
    assert (len(s10), len(s25), len(s50)) == (100, 250, 500)
    assert set(s10) < set(s25) < set(s50)
    assert subsample(items, 0.1, seed=3) == s10 and subsample(items, 0.1, seed=4) != s10
    assert subsample(items, 1.0, seed=3) == items


def test_split_words_offsets():
    text = "TGF-beta1 (in  HNPCC)."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["TGF", "-", "beta1", "(", "in", "HNPCC", ")", "."]
    assert all(text[a:b] == w for w, a, b in words)


def test_sentence_where():
    assert Sentence(("a", "b"), None, "f.tsv", 10).where(1) == "f.tsv:11"


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_only_line_endings_read_like_lf(tmp_path, ending):
    from taskrel.corpus import read_conll

    text = b"Breast\tB-Disease\ncancer\tI-Disease\n\nNo\tO\nentity\tO\n"
    lf, other = tmp_path / "lf.tsv", tmp_path / "other.tsv"
    lf.write_bytes(text)
    other.write_bytes(text.replace(b"\n", ending))
    a, b = read_conll(lf), read_conll(other)
    assert [s.tokens for s in a] == [s.tokens for s in b] and [s.tags for s in a] == [s.tags for s in b]
    assert len(b) == 2


def test_a_byte_order_mark_is_not_a_token(tmp_path):
    from taskrel.corpus import read_conll

    f = tmp_path / "bom.tsv"
    f.write_bytes(b"\xef\xbb\xbf-DOCSTART-\tO\n\nNo\tO\nentity\tO\n")
    sents = read_conll(f)
    assert len(sents) == 1 and sents[0].tokens == ("No", "entity")


def test_named_corpora_resolve_from_the_checkout_or_data_root(monkeypatch, capsys, tiny_corpus):
    from taskrel.cli import main
    from taskrel.corpus import CHECKOUT_DATA

    monkeypatch.setenv("TASKREL_DATA", "")  # registered, so main's --data-root is undone after the test
    monkeypatch.delenv("TASKREL_DATA")
    assert main(["stats", "--data", tiny_corpus.name, "--data-root", str(tiny_corpus.parent)]) == 0
    assert "train" in capsys.readouterr().out
    monkeypatch.delenv("TASKREL_DATA", raising=False)
    if CHECKOUT_DATA.is_dir():  # this project's machines: ../shared/data beside the checkout
        assert main(["stats", "--data", "NCBI-disease"]) == 0
    else:
        assert main(["stats", "--data", "NCBI-disease"]) == 2
        assert "--data-root" in capsys.readouterr().err


def test_version(capsys):
    from taskrel import __version__
    from taskrel.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
