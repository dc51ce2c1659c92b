"""A results table (CSV) as a standalone HTML page, for `snakemake --report`: its viewer shows
images and HTML pages, not CSV or Markdown. Numbers to 3 significant digits, as in the .md."""

from pathlib import Path

import pandas as pd

from amcli.run import atomic_write_text

STYLE = """<style>
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
</style>"""


def html_page(table: pd.DataFrame, title: str) -> str:
    body = table.to_html(index=False, float_format=lambda x: f"{x:.3g}", na_rep="", border=0)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>{STYLE}'
        f"</head>\n<body><h3>{title}</h3>\n{body}\n</body></html>\n"
    )


def main(csv: str, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out), html_page(pd.read_csv(csv), Path(csv).as_posix()))


if "snakemake" in globals():  # a Snakemake rule: its output goes to the rule's log
    import contextlib

    with (
        open(snakemake.log[0], "w") as _log,  # noqa: F821
        contextlib.redirect_stdout(_log),
        contextlib.redirect_stderr(_log),
    ):
        main(snakemake.input[0], snakemake.output[0])  # noqa: F821
