"""Read and validate CoNLL-style corpora into one internal ``Sentence`` type.

A file holds one token a line, the token in the first column and the tag in
the last (optional columns between, tab or space separated), a blank line
between sentences; ``-DOCSTART-`` lines are skipped. Tags in IOB1, IOB2 or
IOBES are normalised to IOB2. Every problem is reported as ``path:line: what
was found; what was expected`` through :class:`CorpusError`.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TaskrelError

SPLIT_FILES = {"train": ("train",), "devel": ("devel", "dev"), "test": ("test",)}
EXTENSIONS = (".tsv", ".conll", ".txt", ".iob")
PREFIXES = ("B", "I", "E", "S")
UNSEEN_TAG_POLICIES = ("error", "o")


class CorpusError(TaskrelError):
    """Bad input data; the message names the file and line."""


@dataclass(frozen=True)
class Sentence:
    """A sentence as words and IOB2 tags (``tags`` is None for unlabelled text).

    ``path`` and ``line`` locate the first word; word ``i`` is on line
    ``line + i`` of a CoNLL file. ``doc`` numbers the ``-DOCSTART-`` document
    the sentence belongs to (None in a file without such markers): the
    document bootstrap resamples whole documents.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    path: str = "<memory>"
    line: int = 0
    doc: int | None = None

    def where(self, i: int = 0) -> str:
        return f"{self.path}:{self.line + i}"


# ---------------------------------------------------------------- tags


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-Disease"`` -> ``("B", "Disease")``; ``"O"`` -> ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in PREFIXES or not kind:
        raise ValueError(tag)
    return prefix, kind


def check_tag(tag: str, where: str) -> None:
    if tag == "":
        raise CorpusError(f"{where}: empty tag; expected O or a tag such as B-Disease")
    try:
        split_tag(tag)
    except ValueError:
        prefix = tag.partition("-")[0]
        raise CorpusError(
            f"{where}: tag {tag!r} has unknown prefix {prefix!r}; expected O or "
            "B-, I-, E-, S- followed by an entity type (IOB1, IOB2 or IOBES)"
        ) from None


def to_iob2(tags: list[str]) -> list[str]:
    """Normalise one sentence's IOB1/IOB2/IOBES tags to IOB2.

    An entity starts at B-/S-, or at an I-/E- that does not continue an open
    entity of the same type; a started entity is tagged B-, its other words I-.
    """
    out = []
    open_kind = None  # type of the entity that the next word may continue
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
            open_kind = None
            continue
        starts = prefix in ("B", "S") or open_kind != kind
        out.append(("B-" if starts else "I-") + kind)
        open_kind = None if prefix in ("E", "S") else kind
    return out


def entity_spans(tags) -> list[tuple[int, int, str]]:
    """Entities of an IOB2 sequence as ``(start, end_exclusive, type)``.

    Strict IOB2: an entity starts at ``B-X`` and runs over the following
    ``I-X``; an ``I-X`` with no open ``X`` entity starts none (as seqeval's
    strict mode scores it).
    """
    spans = []
    start = kind = None
    n = 0
    for n, tag in enumerate(tags, 1):
        if tag == "O":  # most words: close any open entity without parsing the tag
            if kind is not None:
                spans.append((start, n - 1, kind))
                start = kind = None
            continue
        prefix, k = split_tag(tag)
        if kind is not None and not (prefix == "I" and k == kind):
            spans.append((start, n - 1, kind))
            start = kind = None
        if prefix == "B":
            start, kind = n - 1, k
    if kind is not None:
        spans.append((start, n, kind))
    return spans


# ---------------------------------------------------------------- files


def read_lines(path) -> list[str]:
    """A text file's lines; bytes that are not UTF-8 are an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise CorpusError(f"{path}: a folder, not a corpus file") from None
    except OSError as e:  # no read permission, a broken link, an I/O error: name the file
        raise CorpusError(f"{path}: cannot be read ({e.strerror or e})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not part of the first line
        data = data[3:]
    # \n, \r\n and old-Mac \r line endings alike (a CR-only file would otherwise be one line)
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out = []
    for n, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{path}:{n}: byte {raw[e.start : e.start + 1]!r} at column {e.start + 1} "
                "is not valid UTF-8; expected a UTF-8 text file"
            ) from None
    if lines and lines[-1] == b"":
        out.pop()
    return out


def split_columns(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def is_docstart(line: str) -> bool:
    return line.lstrip().startswith("-DOCSTART-")


def read_conll(path, labelled: bool = True) -> list[Sentence]:
    """Read one CoNLL-style file. With ``labelled=False`` the tag column is optional."""
    path = Path(path)
    lines = read_lines(path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    ncols = first_line = None
    doc = None  # the current -DOCSTART- document, counted from 0

    def flush():
        if tokens:
            normalised = tuple(to_iob2(tags)) if labelled else None
            sentences.append(Sentence(tuple(tokens), normalised, str(path), start, doc))
        tokens.clear()
        tags.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip() or is_docstart(line):
            flush()
            if is_docstart(line):
                doc = 0 if doc is None else doc + 1
            continue
        cols = split_columns(line)
        if ncols is None:
            ncols, first_line = len(cols), n
            if labelled and ncols < 2:
                raise CorpusError(
                    f"{path}:{n}: found 1 column ({line.strip()!r}); expected a token "
                    "and a tag separated by a tab or spaces"
                )
        elif len(cols) != ncols:
            raise CorpusError(
                f"{path}:{n}: found {len(cols)} columns; expected {ncols} "
                f"(as on line {first_line}), token first and tag last"
            )
        if not cols[0].strip():
            raise CorpusError(f"{path}:{n}: empty token; expected a word in the first column")
        if not tokens:
            start = n
        tokens.append(cols[0].strip())
        if labelled:
            tag = cols[-1].strip()
            check_tag(tag, f"{path}:{n}")
            tags.append(tag)
    flush()
    if not sentences:
        raise CorpusError(f"{path}: empty file; expected sentences of 'token<TAB>tag' lines")
    return sentences


# ---------------------------------------------------------------- corpora


@dataclass
class Corpus:
    name: str
    root: str
    splits: dict[str, list[Sentence]]

    @property
    def tag_set(self) -> list[str]:
        """The IOB2 tags of the training split, O first, then by entity type."""
        return ner_labels_of(self.splits["train"])


def ner_labels_of(sentences) -> list[str]:
    kinds = sorted({split_tag(t)[1] for s in sentences for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def find_split(root: Path, split: str) -> Path:
    for stem in SPLIT_FILES[split]:
        for ext in EXTENSIONS:
            if (root / f"{stem}{ext}").is_file():
                return root / f"{stem}{ext}"
    wanted = " or ".join(f"{s}{{{','.join(EXTENSIONS)}}}" for s in SPLIT_FILES[split])
    found = ", ".join(sorted(p.name for p in root.iterdir())) or "nothing"
    raise CorpusError(f"{root}: missing the {split} split; expected {wanted} (found: {found})")


# where corpora named without a path are looked up when $TASKREL_DATA is not set: ../shared/data beside
# the checkout, where this project's machines keep the benchmark corpora
CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_root() -> Path | None:
    """The folder of named corpora: ``$TASKREL_DATA``, else the checkout's ``../shared/data`` if it exists."""
    if os.environ.get("TASKREL_DATA"):
        return Path(os.environ["TASKREL_DATA"])
    return CHECKOUT_DATA if CHECKOUT_DATA.is_dir() else None


def resolve_data(arg: str | os.PathLike) -> Path:
    """A corpus folder given as a path, or as a name under ``data_root()``."""
    path = Path(arg)
    if path.is_dir():
        return path
    base = data_root()
    if base and (base / arg).is_dir():
        return base / arg
    where = f"'{path}' is not a folder"
    where += (
        f", nor is '{base / arg}'"
        if base
        else f", $TASKREL_DATA is not set and {CHECKOUT_DATA} does not exist (pass --data-root)"
    )
    raise CorpusError(f"corpus {arg!r} not found: {where}")


def load_corpus(arg, splits=("train", "devel", "test"), unseen_tags: str = "error") -> Corpus:
    """Load a corpus folder; tags of devel/test never seen in train follow ``unseen_tags``.

    ``unseen_tags="error"`` stops at the first such tag (file and line named);
    ``"o"`` maps it to ``O`` with one warning per file.
    """
    if unseen_tags not in UNSEEN_TAG_POLICIES:
        raise ValueError(f"unseen_tags must be one of {UNSEEN_TAG_POLICIES}")
    root = resolve_data(arg)
    needed = ("train",) + tuple(s for s in splits if s != "train")
    data = {s: read_conll(find_split(root, s)) for s in needed}
    known = set(ner_labels_of(data["train"]))
    for split in needed[1:]:
        data[split] = apply_unseen_policy(data[split], known, unseen_tags)
    return Corpus(root.name, str(root), {s: data[s] for s in needed if s in splits or s == "train"})


def apply_unseen_policy(sentences, known, policy):
    out, mapped = [], 0
    for s in sentences:
        bad = [i for i, t in enumerate(s.tags) if t not in known]
        if not bad:
            out.append(s)
            continue
        if policy == "error":
            i = bad[0]
            raise CorpusError(
                f"{s.where(i)}: tag {s.tags[i]!r} never occurs in the training split; "
                f"expected one of {sorted(known)} (use unseen tags policy 'o' to map it to O)"
            )
        tags = list(s.tags)
        for i in bad:
            tags[i] = "O"
        mapped += len(bad)
        out.append(Sentence(s.tokens, tuple(to_iob2(tags)), s.path, s.line))
    if mapped:
        warnings.warn(f"{sentences[0].path}: {mapped} tags unseen in train were mapped to O", stacklevel=3)
    return out


def subsample(sentences: list, fraction: float, seed: int) -> list:
    """A seeded subset of ``ceil(fraction * n)`` items, nested across fractions.

    The items are a prefix of one seeded permutation, so for one seed the 10%
    subset lies inside the 25% one, inside the 50% one. Original order is kept.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(sentences)
    order = np.random.default_rng(seed).permutation(len(sentences))
    keep = np.sort(order[: math.ceil(fraction * len(sentences))])
    return [sentences[i] for i in keep]


def take(sentences: list, k: int | None, seed: int) -> list:
    """A seeded subset of at most ``k`` items (all when ``k`` is None or not smaller), original order kept."""
    if k is None or k >= len(sentences):
        return list(sentences)
    keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(sentences))[:k])
    return [sentences[i] for i in keep]


def subset_sha1(sentences) -> str:
    """A hash of which sentences a subset holds (file name and line of each), the same on every machine."""
    import hashlib

    ids = "\n".join(f"{Path(s.path).name}:{s.line}" for s in sentences)
    return hashlib.sha1(ids.encode()).hexdigest()


WORD_RE = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Tokenise raw text like the corpora: words and single punctuation marks.

    Returns ``(word, start, end)`` with character offsets into ``text``.
    """
    return [(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]
