"""The "Add a new baseline" example of baselines/README.md, run as printed: one new file and one
registry line, then the method passes the contract checks and joins the workflow grid."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import yaml

import baselines.registry as registry
from amcli.config import parse_run_config
from amcli.grid import all_runs, run_config_dict
from tests.baselines.test_contract import build, params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registered(tmp_path, monkeypatch):
    text = (ROOT / "baselines" / "README.md").read_text()
    code = re.search(r"<!-- guide-example -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.splitlines()) < 100
    path = tmp_path / "reward_weighted.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("reward_weighted", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(registry.METHODS, "reward_weighted", module.RewardWeighted)
    return module


@pytest.mark.parametrize("schedule", ["flow_matching", "vp_linear"])
def test_guide_method_passes_the_contract(registered, schedule):
    model, method = build("reward_weighted", schedule, num_steps=6)
    out = method.loss(model, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    before = params(model)
    torch.optim.Adam(model.net.parameters(), lr=1e-2).step()
    assert not torch.equal(before, params(model))


def test_guide_method_passes_the_conditional_contract(registered):
    """The example draws its batch's conditions: each row reaches the model, the base and the
    reward with its own (test_conditional_contract.py's row check), and the label embedding
    gets a gradient; a shuffle of the conditions changes the loss."""
    from tests.baselines.test_conditional_contract import (
        test_conditions_reach_model_base_and_reward_row_by_row,
        test_shuffled_conditions_change_the_loss,
    )

    test_conditions_reach_model_base_and_reward_row_by_row("reward_weighted")
    test_shuffled_conditions_change_the_loss("reward_weighted")


def test_guide_method_joins_the_workflow_grid(registered):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    runs = [r for r in all_runs(config) if r["method"] == "reward_weighted"]
    # every problem entry that runs all tags (a plain name), at every grid-wide reward scale and
    # seed; the entries with their own method list (the 1-D Theorem 1 trio) leave it out
    grid = config["grid"]
    plain = [p for p in grid["problems"] if isinstance(p, str)]
    assert plain, "the default grid should have a problem that runs every method"
    assert len(runs) == len(plain) * len(grid["reward_scales"]) * len(grid["seeds"])
    assert {r["problem"] for r in runs} == set(plain)
    point = {k: runs[0][k] for k in ("problem", "lam", "method", "seed")}
    cfg = parse_run_config(run_config_dict(config, **point))
    assert cfg.method == "reward_weighted" and cfg.method_config.num_steps == 40
