"""Does a seed's luck on dev carry to test? (why tuned settings are never scored at the tuning seed)

A tuning study trains every trial with one seed and keeps the trial with the
best dev score. Scored again at that seed, the tuned settings give the selected
trial itself. If, within one configuration, a seed that does well on dev also
does well on test, that trial's test score keeps part of the luck it was
selected for, and the tuned arm is favoured at that seed.

This measures it on finished runs: every run folder ``STUDY/VARIANT/CORPUS/seedK``
under the study folders given, grouped by (study, variant, corpus), one
configuration each, that differ only in their seed. Per group, dev and test
(the selected epoch's main-task score) are centred on the group's means; the
table gives the Pearson r and the least-squares slope of test on dev per
corpus and over all groups, with the runs and groups counted. Only groups of 3
or more runs count. A run shared between studies (``runs_in``) is counted once.

    python benchmarks/dev_test_luck.py runs/lowres-10pct runs/lowres-10pct-sub2 \\
        runs/patience-bc2gm runs/patience-ncbi runs/patience-chem --out reports/statistics
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from taskrel.rundir import RunDir


def collect(studies: list[Path]) -> pd.DataFrame:
    rows, seen = [], set()
    for study in studies:
        for metrics in sorted(Path(study).glob("*/*/seed*/metrics.json")):
            folder = metrics.parent
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            run = RunDir(folder)
            dev, test = run.score("dev"), run.score("test")
            if np.isnan(dev) or np.isnan(test):
                continue
            rows.append(
                {"group": f"{Path(study).name}/{folder.parent.parent.name}", "corpus": folder.parent.name}
                | {"seed": folder.name, "dev": dev, "test": test}
            )
    runs = pd.DataFrame(rows)
    keys = ["group", "corpus"]
    runs = runs[runs.groupby(keys)["dev"].transform("size") >= 3].copy()
    for col in ("dev", "test"):
        runs[f"{col}_c"] = runs[col] - runs.groupby(keys)[col].transform("mean")
    return runs


def table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for corpus, part in [*runs.groupby("corpus"), ("all", runs)]:
        r, p = pearsonr(part["dev_c"], part["test_c"])
        slope = float(np.polyfit(part["dev_c"], part["test_c"], 1)[0])
        groups = part.groupby(["group", "corpus"]).ngroups
        rows.append({"corpus": corpus, "runs": len(part), "groups": groups, "r": r, "p": p, "slope": slope})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="+", type=Path, help="study folders (runs/<study>)")
    ap.add_argument("--out", type=Path, default=None, help="write dev_test_luck.json here")
    a = ap.parse_args(argv)
    result = table(collect(a.studies))
    print(result.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        record = {"studies": [str(s) for s in a.studies], "table": result.to_dict(orient="records")}
        (a.out / "dev_test_luck.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
