"""Run the analysis notebooks headless with parameters, and export them to HTML.

A notebook has one cell tagged ``parameters``; ``execute`` replaces its source
with the given values (as papermill does) and runs every cell with nbclient.
``NOTEBOOKS`` maps the kind of results a folder holds to its notebook and the
parameter that names the folder.
"""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = {  # marker file of a results folder -> (notebook, parameter)
    "grid.json": ("pairwise_transfer.ipynb", "GRID_DIR"),
    "tune.json": ("loss_weight_tuning.ipynb", "TUNE_DIR"),
    "embeddings.npz": ("task_embeddings.ipynb", "EMB_DIR"),
}


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


def export_for(folders: list[Path], notebooks_dir, out, extra: dict | None = None) -> list[Path]:
    """Execute the notebook of every results folder and write ``out/notebook-NAME-FOLDER.html``."""
    written = []
    for folder in folders:
        for marker, (name, param) in NOTEBOOKS.items():
            if (folder / marker).is_file():
                params = {param: str(folder.resolve())}
                if name == "task_embeddings.ipynb":
                    params |= {"GRID_DIR": None, "AFF_DIR": None} | (extra or {})
                nb = execute(Path(notebooks_dir) / name, params, cwd=folder)
                written.append(export_html(nb, Path(out) / f"notebook-{Path(name).stem}-{folder.name}.html"))
    return written
