"""Run the analysis notebooks headless with parameters, and export them to HTML.

A notebook has one cell tagged ``parameters``; ``execute`` replaces its source
with the given values (as papermill does) and runs every cell with nbclient.
Each study kind (``kinds.KINDS``) names its notebook and the parameter that
names its results folder.
"""

from __future__ import annotations

from pathlib import Path

from .kinds import KINDS, kinds_of


def execute(path, params: dict, cwd=None, timeout: int = 600):
    """The executed notebook (``nbformat`` node); an error in a cell raises."""
    import nbclient
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path}: one cell tagged 'parameters' expected, found {len(tagged)}")
    tagged[0].source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    resources = {"metadata": {"path": str(cwd or path.parent)}}
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources).execute()
    return nb


def export_html(nb, out) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    Path(out).write_text(body)
    return Path(out)


def export_folder(src, notebooks_dir, out) -> list[Path]:
    """The notebooks of a results folder, or of its sub-folders when it holds none itself.

    The embeddings notebook also scores the folder's grid and affinities against each other when the
    same folder holds them (a relations folder: ``grid/``, ``embeddings/``, ``tag/``).
    """
    src = Path(src)
    folders = [src] if kinds_of(src) else sorted(d for d in src.iterdir() if d.is_dir())
    first = lambda kind: next((str(d.resolve()) for d in folders if KINDS[kind].holds(d)), None)  # noqa: E731
    return export_for(folders, notebooks_dir, out, {"GRID_DIR": first("grid"), "AFF_DIR": first("affinity")})


def export_for(folders: list[Path], notebooks_dir, out, extra: dict | None = None) -> list[Path]:
    """Execute the notebook of every results folder and write ``out/notebook-NAME-FOLDER.html``."""
    written = []
    for folder in folders:
        for kind in kinds_of(folder):
            if kind.notebook:
                name, param = kind.notebook
                params = {param: str(folder.resolve())}
                if name == "task_embeddings.ipynb":
                    params |= {"GRID_DIR": None, "AFF_DIR": None} | (extra or {})
                nb = execute(Path(notebooks_dir) / name, params, cwd=folder)
                written.append(export_html(nb, Path(out) / f"notebook-{Path(name).stem}-{folder.name}.html"))
    return written
