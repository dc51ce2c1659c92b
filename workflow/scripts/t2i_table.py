"""Snakemake script: the text-to-image table, one row per model (the base, then each method),
one column per metric (mean ± standard error over prompts), from each samples folder's
``metrics/metrics.csv`` (``amcli.score_images``)."""

from pathlib import Path

import pandas as pd


def main(inputs: list[str], csv: str, md: str) -> None:
    rows = []
    for path in inputs:
        model = Path(path).parents[2].name  # <runs>/t2i/<model>/samples/metrics/metrics.csv
        for r in pd.read_csv(path).itertuples():
            rows.append({"model": model, "metric": r.metric, "mean": r.mean, "stderr": r.stderr,
                         "prompts": r.prompts, "version": r.version, "scale": r.scale})  # fmt: skip
    long = pd.DataFrame(rows)
    long.to_csv(csv, index=False)
    cells = long.assign(
        cell=[f"{m:.4g} ± {s:.2g}" for m, s in zip(long["mean"], long["stderr"], strict=True)]
    )
    wide = cells.pivot(index="model", columns="metric", values="cell")
    wide = wide.loc[list(dict.fromkeys(long["model"]))]  # base first, then the methods in order
    versions = long.drop_duplicates("metric")
    head = "\n".join(f"- **{r.metric}**: {r.version}; {r.scale}" for r in versions.itertuples())
    Path(md).write_text(
        "# Text-to-image: image metrics of the base and each fine-tuned model\n\n"
        f"Mean ± standard error over {int(long['prompts'].max())} evaluation prompts.\n\n"
        f"{head}\n\n{wide.reset_index().to_markdown(index=False)}\n"
    )


if "snakemake" in globals():
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(list(snakemake.input), snakemake.output.csv, snakemake.output.md)  # noqa: F821
