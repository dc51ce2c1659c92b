"""Snakemake script: write the rule's ``params.data`` as YAML to its output (a run's config)."""

from pathlib import Path

import yaml

if "snakemake" in globals():
    out = Path(snakemake.output[0])  # noqa: F821
    out.write_text(yaml.safe_dump(snakemake.params.data, sort_keys=False))  # noqa: F821
    Path(snakemake.log[0]).write_text(f"wrote {out}\n")  # noqa: F821
