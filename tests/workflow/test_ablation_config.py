"""config/ablation.yaml, the settings behind the ground-truth defaults as workflow variants:
the schema and every run's config pass, and each tag changes exactly what its name says
against the reference run on the same problem (everything else equal)."""

from __future__ import annotations

from pathlib import Path

import yaml

from amcli.config import parse_run_config
from amcli.grid import all_runs, run_config_dict, validate_grid

ROOT = Path(__file__).resolve().parents[2]

# tag -> the (section, key) pairs of the run config it changes against adjoint_matching
CHANGES = {
    "am_weighting_adjoint": {("method", "weighting")},
    "am_weighting_drift": {("method", "weighting")},
    "am_no_control_variate": {("method", "control_variate")},
    "am_grad_clip": {("train", "grad_clip")},
    "am_paper_clipping": {("method", "clip_multiplier"), ("train", "grad_clip")},
    "am_clip_guard": {("method", "clip_multiplier")},
    "am_no_step0": {("method", "steps")},
    "am_k80": {("method", "num_steps")},
    "am_lr3e-3_3000": {("train", "lr"), ("train", "iterations")},
    "am_warped_lr3e-3_3000": {("method", "grid_warp"), ("train", "lr"), ("train", "iterations")},
    "am_lr3e-3_2400": {("train", "lr"), ("train", "iterations")},
}


def config() -> dict:
    return yaml.safe_load((ROOT / "config" / "ablation.yaml").read_text())


def test_ablation_config_passes_schema_and_every_run_parses(tmp_path):
    from snakemake.utils import validate

    from amcli.schema import write_workflow_schema

    cfg = config()
    validate(cfg, write_workflow_schema(tmp_path / "schema.json"))
    validate_grid(cfg)
    tags = {r["method"] for r in all_runs(cfg)}
    assert tags == {"adjoint_matching", *CHANGES}


def test_each_tag_changes_what_its_name_says():
    cfg = config()
    for run in all_runs(cfg):
        if run["method"] == "adjoint_matching":
            continue
        ref = parse_run_config(
            run_config_dict(cfg, run["problem"], run["lam"], "adjoint_matching", 0)
        )
        new = parse_run_config(run_config_dict(cfg, run["problem"], run["lam"], run["method"], 0))
        changed = {
            (section, key)
            for section in ("problem", "model", "train", "eval", "method_config")
            for key, value in vars(getattr(new, section)).items()
            if getattr(getattr(ref, section), key) != value
        }
        changed = {("method" if s == "method_config" else s, k) for s, k in changed}
        assert changed == CHANGES[run["method"]], run["method"]
        assert new.method == ref.method == "adjoint_matching"
