"""A study's results folder packed into its report, and unpacked on a fresh machine.

A report commits its study's runs as ``runs.tar.gz`` (``pack``): the study's tables and records and every run
folder without its weights. A run that could still go on (unfinished, with a checkpoint or a live lock) is left
out: its files are being written, and a fresh machine has no checkpoint to resume it from. An unfinished run that
cannot go on (a trial its tuning study pruned, a failed run) keeps its records, which the pruning curves read. An
SQLite database (a tuning study's trials) goes in as a consistent copy, taken with SQLite's backup even while the
study writes to it. The same files always pack into the same bytes, so an unchanged study leaves git clean.

``unpack`` (``taskrel restore``, the first step of ``make studies``) brings a study's committed runs back into
its results folder on a fresh checkout, so a queue goes on where the last committed slice stopped instead of
training again what was trained. It never overwrites a file that is there: the folder on disk is at least as new.
"""

from __future__ import annotations

import gzip
import io
import os
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .locks import LOCK_FILE, is_locked
from .rundir import CHECKPOINT, CONFIG, METRICS, MODEL, RunDir

ARCHIVE = "runs.tar.gz"
WEIGHTS = (MODEL, CHECKPOINT)  # folders a run keeps its weights in: never packed
SKIPPED_SUFFIXES = (".tmp", "-journal", "-wal", "-shm")  # half-written files and SQLite's side files
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass
class Packed:
    path: Path
    finished: int = 0  # run folders with their final metrics
    stopped: int = 0  # unfinished run folders that cannot go on (pruned or failed): records only
    left_out: list[str] = field(default_factory=list)  # runs that could still go on, relative to the folder
    files: int = 0

    def line(self) -> str:
        size = self.path.stat().st_size / 2**20
        parts = [f"{self.finished} finished run(s)"]
        if self.stopped:
            parts.append(f"{self.stopped} stopped for good (pruned or failed, records only)")
        if self.left_out:
            shown = ", ".join(self.left_out[:3]) + (" ..." if len(self.left_out) > 3 else "")
            parts.append(f"{len(self.left_out)} unfinished left out ({shown})")
        return f"{self.path}: {'; '.join(parts)}, {self.files} files, {size:.1f} MiB"


def _could_go_on(run: Path) -> bool:
    """An unfinished run that could still be resumed; a trial its pruner stopped is over, checkpoint or not."""
    return not RunDir(run).over and ((run / CHECKPOINT).is_dir() or is_locked(run))


def _members(folder: Path, packed: Packed):
    """(path on disk, name in the archive) of what is packed, in a stable order."""
    top = folder.name
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        rel = here.relative_to(folder)
        if (here / CONFIG).is_file():  # a run folder
            if _could_go_on(here):
                packed.left_out.append(str(rel))
                dirs[:] = []
                continue
            if (here / METRICS).is_file():
                packed.finished += 1
            else:
                packed.stopped += 1
            dirs[:] = [d for d in dirs if d not in WEIGHTS]
        dirs.sort()
        yield here, str(Path(top) / rel) if str(rel) != "." else top
        for name in sorted(files):
            if name == LOCK_FILE or name.endswith(SKIPPED_SUFFIXES) or (here / name).is_symlink():
                continue
            yield here / name, str(Path(top) / rel / name)


def _info(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def _read(path: Path) -> bytes:
    if path.suffix not in SQLITE_SUFFIXES:
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:  # a consistent copy, even while a study writes to it
        copy = Path(tmp) / path.name
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return copy.read_bytes()


def pack(folder, dest) -> Packed:
    """Pack the results folder ``folder`` into ``dest`` (written atomically); see the module's note."""
    folder, dest = Path(folder), Path(dest)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such results folder to pack")
    packed = Packed(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, name in _members(folder, packed):
                if path.is_dir():
                    tar.addfile(_info(name + "/", None))
                    continue
                data = _read(path)
                tar.addfile(_info(name, len(data)), io.BytesIO(data))
                packed.files += 1
    os.replace(tmp, dest)
    return packed


def unpack(archive, folder) -> tuple[int, int]:
    """Unpack ``archive`` (made by ``pack``) into the results folder ``folder``, leaving every file already
    there as it is; returns (files written, files already there). Refuses an archive of another folder."""
    archive, folder = Path(archive), Path(folder)
    top = folder.name
    written = kept = 0
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            parts = Path(m.name).parts
            if not parts or parts[0] != top or ".." in parts or Path(m.name).is_absolute():
                raise ConfigError(
                    f"{archive}: {m.name!r} is not inside {top}/; this archive is not the runs of {folder} "
                    f"(unpack it by hand with tar xzf)"
                )
            if not (m.isfile() or m.isdir()):
                raise ConfigError(f"{archive}: {m.name!r} is neither a file nor a folder; refused")
        for m in members:
            target = folder.parent / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif target.exists():
                kept += 1
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(tar.extractfile(m).read())
                os.replace(tmp, target)  # a kill never leaves half a file under the final name
                written += 1
    return written, kept
