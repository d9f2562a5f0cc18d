"""Reports of results folders: ``report.md`` and a self-contained ``report.html``.

``write_report(SRC, OUT)`` reads a grid folder (``grid.json``) or a study folder
(``study.json``), and writes the tables (mean ± std over seeds) and figures
into ``OUT``. One list of blocks renders to both Markdown and HTML.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .config import ConfigError

Block = tuple  # ("h1"|"h2"|"p", text) | ("table", DataFrame) | ("img", path, caption)


def _pm(mean: float, std: float, scale: float = 100, signed: bool = False) -> str:
    sign = "+" if signed else ""
    text = f"{scale * mean:{sign}.2f}"
    return text + (f" ± {scale * std:.2f}" if pd.notna(std) else "")


def grid_blocks(folder: Path, title: str | None = None) -> list[Block]:
    from .grid import load_results

    res = load_results(folder)
    grid, runs, transfer = res.grid, res.runs, res.transfer
    base = grid.base
    blocks: list[Block] = [
        ("h2", title or f"Pairwise transfer grid: {Path(base.data.data).name or 'several corpora'}"),
        (
            "p",
            f"Tasks {', '.join(grid.tasks)}; seeds {', '.join(map(str, grid.seeds))}; encoder `{base.model.encoder}`; "
            f"{100 * base.data.train_fraction:g}% of train; {base.train.epochs} epochs; lr {base.train.lr:g}; "
            f"batch {base.train.batch_size}; pair weights main {grid.pair_weights[0]:g}, secondary "
            f"{grid.pair_weights[1]:g}; model selected on dev, scored on test.",
        ),
    ]
    if len(runs):
        hours = runs["seconds"].sum() / 3600
        blocks.append(("p", f"{len(runs)} finished runs; compute {hours:.2f} h (training and evaluation, summed)."))
        alone = res.alone()
        table = pd.DataFrame(
            {
                "main task": alone.index,
                "metric": alone["metric"].values,
                "test score alone (×100)": [_pm(m, s) for m, s in zip(alone["mean"], alone["std"])],
                "seeds": alone["count"].values,
            }
        )
        blocks += [("h2", "Each task alone"), ("table", table)]
    if len(transfer):
        t = pd.DataFrame(
            {
                "main": transfer["main"],
                "secondary": transfer["secondary"],
                "Δ (points)": [_pm(m, s, signed=True) for m, s in zip(transfer["mean_delta"], transfer["std_delta"])],
                "95% CI": [
                    f"[{100 * lo:+.2f}, {100 * hi:+.2f}]" for lo, hi in zip(transfer["ci_low"], transfer["ci_high"])
                ],
                "p (bootstrap)": transfer["p_bootstrap"].map(lambda p: f"{p:.3f}"),
                "p (seeds)": transfer["p_seeds"].map(lambda p: "n/a" if pd.isna(p) else f"{p:.3f}"),
                "significant": transfer["significant"].map(lambda s: "yes" if s else ""),
            }
        )
        blocks += [
            ("h2", "Transfer Δ(main | secondary)"),
            (
                "p",
                "Δ = score(main trained with secondary) − score(main alone), per seed, then mean ± std over seeds, "
                "in points (×100). p (bootstrap): paired bootstrap over test sentences of the seed-averaged Δ; "
                "p (seeds): t-test of the per-seed Δ; significant: p (bootstrap) < "
                f"{grid.alpha}.",
            ),
            ("table", t),
        ]
    for name, caption in (("heatmap.png", "Transfer heatmap"), ("learning_curves.png", "Dev score by epoch")):
        if (folder / name).is_file():
            blocks.append(("img", folder / name, caption))
    return blocks


def study_blocks(folder: Path) -> list[Block]:
    study = json.loads((folder / "study.json").read_text())
    blocks: list[Block] = [("h1", f"Study {study['name']}"), ("p", study.get("description") or "")]
    blocks.append(("p", f"From `{study['file']}`: corpora {', '.join(study['corpora'])}; seeds {study['seeds']}."))
    if study["kind"] == "grid":
        for corpus in study["corpora"]:
            sub = folder / Path(corpus).name
            if (sub / "grid.json").is_file():
                blocks += grid_blocks(sub, f"Grid on {Path(corpus).name}")
        return blocks
    if (folder / "summary.csv").is_file():
        s = pd.read_csv(folder / "summary.csv")
        metrics = [m for m in ("precision", "recall", "f1", "accuracy") if f"{m}_mean" in s]
        table = s[["corpus", "variant"]].copy()
        for m in metrics:
            table[f"{m} (×100)"] = [_pm(a, b) for a, b in zip(s[f"{m}_mean"], s[f"{m}_std"])]
        table["seeds"] = s[f"{metrics[0]}_count"]
        blocks += [("h2", "Test scores of the main task, mean ± std over seeds"), ("table", table)]
    return blocks


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], figures: dict) -> str:
    parts = []
    for b in blocks:
        if b[0] == "h1":
            parts.append(f"# {b[1]}")
        elif b[0] == "h2":
            parts.append(f"## {b[1]}")
        elif b[0] == "p" and b[1]:
            parts.append(b[1])
        elif b[0] == "table":
            parts.append(_md_table(b[1]))
        elif b[0] == "img":
            parts.append(f"![{b[2]}]({figures[b[1]]})")
    return "\n\n".join(parts) + "\n"


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            body.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p" and b[1]:
            body.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "table":
            body.append(b[1].to_html(index=False, escape=True, border=0, classes="results"))
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}"
        "table.results{border-collapse:collapse;margin:1rem 0}"
        "table.results td,table.results th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(src, out) -> Path:
    """Write ``report.md``, ``report.html`` and the figures of a grid or study folder into ``out``."""
    src, out = Path(src), Path(out)
    if (src / "grid.json").is_file():
        blocks = [("h1", f"Report: {src.name}")] + grid_blocks(src)
    elif (src / "study.json").is_file():
        blocks = study_blocks(src)
    else:
        raise ConfigError(f"{src}: neither a grid folder (grid.json) nor a study folder (study.json)")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks.append(("p", f"Generated by taskrel report from {src} on {stamp}."))
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for b in blocks:
        if b[0] == "img":
            rel = Path(b[1]).relative_to(src)
            name = "_".join(rel.parts)
            shutil.copyfile(b[1], out / name)
            figures[b[1]] = name
    (out / "report.md").write_text(to_markdown(blocks, figures))
    (out / "report.html").write_text(to_html(blocks, blocks[0][1]))
    return out / "report.md"
