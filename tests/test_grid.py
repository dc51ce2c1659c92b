"""The workflow's grid (`amcli.grid`): methods x reward scales x problems x seeds, Figure 2's
own experiment, run directories, and grid errors that name the key."""

import pytest
import yaml

from amcli.config import ConfigError, parse_run_config
from amcli.grid import (
    all_runs,
    estimated_cost,
    figure2_runs,
    long_runs,
    problem_names,
    run_config_dict,
    run_configs,
    validate_grid,
)
from baselines import METHODS


def test_registry_and_grid():
    assert "adjoint_matching" in METHODS
    config = yaml.safe_load(open("config/full.yaml"))
    runs = all_runs(config)
    tags = list(METHODS) + list(config["variants"])  # "all": every registry key, then variants
    assert [r["method"] for r in runs[: len(tags)]] == tags
    # the full config: three problems run every tag at both scales
    assert len(runs) == 3 * 2 * len(tags)
    assert problem_names(config) == ["gmm1d_linear", "gmm2d_quadratic", "gmm10d_quadratic"]
    validate_grid(config)
    d = run_config_dict(config, "gmm1d_linear", "2", "am_constant_sigma_0.2", 3)
    cfg = parse_run_config(d)
    assert cfg.method == "am_constant_sigma" and cfg.tag == "am_constant_sigma_0.2"
    assert cfg.method_config.diffusion == 0.2 and cfg.train.seed == 3
    assert cfg.problem.reward_scale == 2.0
    # a tag may carry its own training settings (e.g. a paper's learning rate and clipping)
    config["variants"]["draft_paper"] = {"name": "draft", "train": {"lr": 1e-5, "grad_clip": 1.0}}
    cfg = parse_run_config(run_config_dict(config, "gmm2d_quadratic", "1", "draft_paper", 0))
    assert cfg.train.lr == 1e-5 and cfg.train.grad_clip == 1.0 and cfg.train.iterations == 800
    config["defaults"]["train"]["lr"] = -1
    with pytest.raises(ConfigError, match="train"):
        validate_grid(config)


def test_figure2_is_its_own_experiment():
    config = yaml.safe_load(open("config/full.yaml"))
    fig = config["figure2"]
    runs = figure2_runs(config)
    assert [r["method"] for r in runs] == fig["methods"] * len(fig["problems"])
    configs, grid_dirs = run_configs(config), {r["dir"] for r in all_runs(config)}
    for r in runs:
        cfg = parse_run_config(configs[r["dir"]])
        assert (cfg.problem.name, cfg.tag, cfg.train.seed) == (r["problem"], r["method"], 0)
        assert cfg.problem.reward_scale == fig["reward_scale"]
        # a run with no figure2 override is the grid's run, if the grid has the point; one with
        # an override never is
        shared = r["problem"] in problem_names(config) and r["problem"] not in fig["overrides"]
        assert (r["dir"] in grid_dirs) == shared
    one_d = [r for r in runs if r["problem"] == "gmm1d_linear"]
    assert all(r["dir"].startswith("runs_full/figure2/gmm1d_linear/") for r in one_d)
    cfg = parse_run_config(configs[one_d[0]["dir"]])
    assert (cfg.train.lr, cfg.train.iterations, cfg.model.hidden) == (3e-3, 4500, 256)
    method = cfg.method_config
    assert (method.num_steps, method.grid_warp, method.clip_multiplier) == (80, 0.5, 1e6)
    assert (cfg.eval.repeats, cfg.eval.floor_repeats) == (20, 200)
    # the comparison grid keeps its equal budget at the same point
    grid_cfg = parse_run_config(configs["runs_full/gmm1d_linear/lam1/adjoint_matching/seed0"])
    assert (grid_cfg.train.lr, grid_cfg.train.iterations) == (1e-3, 1000)
    # problems outside the grid (the overlapping modes) run in the figure2 experiment only
    assert "runs_full/figure2/gmm2d_overlap_quadratic/lam1/adjoint_matching/seed0" in configs
    assert len(configs) == len(grid_dirs) + sum(r["dir"] not in grid_dirs for r in runs)


def test_default_config_theorem1_runs_compare_like_with_like():
    """config/config.yaml's Theorem 1 runs: full.yaml's evaluation (floors over 200 pairs, 1-D
    distances over 20) and, per problem, one training setting for the three schedules (only the
    method's diffusion differs), so its table compares like with like; the method comparison
    shares them (trained once) and gives every other method the same budget per problem."""
    config = yaml.safe_load(open("config/config.yaml"))
    configs = run_configs(config)
    fig2 = [parse_run_config(configs[r["dir"]]) for r in figure2_runs(config)]
    assert len(fig2) == 9
    assert {r["dir"] for r in figure2_runs(config)} <= {r["dir"] for r in all_runs(config)}
    for cfg in fig2:
        assert cfg.eval.floor_repeats == 200
        assert cfg.eval.repeats == (20 if cfg.problem.name == "gmm1d_linear" else 5)
    for problem in {c.problem.name for c in fig2}:
        trio = [c for c in fig2 if c.problem.name == problem]
        assert len({(c.train, c.model) for c in trio}) == 1, problem
        methods = {
            (m.num_steps, m.grid_warp, m.clip_multiplier, m.weighting, m.control_variate)
            for m in (c.method_config for c in trio)
        }
        assert len(methods) == 1, problem
    everyone = [parse_run_config(c) for c in configs.values()]
    for problem in ("gmm2d_overlap_quadratic", "gmm10d_overlap_quadratic"):
        runs = [c for c in everyone if c.problem.name == problem]
        assert len(runs) == len(METHODS) + len(config["variants"])
        assert len({(c.train, c.model, c.eval) for c in runs}) == 1, problem


def test_long_runs_are_the_expensive_ones():
    """The workflow starts the long runs first: in the default config the three 1-D runs (4500
    iterations against 800), in the full one the Theorem 1 1-D runs among them (K = 80, hidden
    256, 4500 iterations); the cost estimate scales with iterations, steps and width^2."""
    default = yaml.safe_load(open("config/config.yaml"))
    assert sorted(long_runs(default)) == sorted(
        r["dir"] for r in all_runs(default) if r["problem"] == "gmm1d_linear"
    )
    full = yaml.safe_load(open("config/full.yaml"))
    assert "runs_full/figure2/gmm1d_linear/lam1/adjoint_matching/seed0" in long_runs(full)
    assert "runs_full/gmm2d_quadratic/lam1/draft/seed0" not in long_runs(full)
    cfg = run_config_dict(default, "gmm2d_overlap_quadratic", "1", "adjoint_matching", 0)
    longer = {**cfg, "train": {**cfg["train"], "iterations": 1600}}
    wider = {**cfg, "model": {**cfg["model"], "hidden": 128}}
    assert estimated_cost(longer) == 2 * estimated_cost(cfg)
    assert estimated_cost(wider) == 4 * estimated_cost(cfg)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda f: f.update(problem=["x"]), "figure2.problem: unknown key"),
        (lambda f: f.update(methods=[]), "figure2.methods: expected a non-empty list"),
        (lambda f: f.update(methods=["nope"]), "figure2.methods: unknown method tag 'nope'"),
        (lambda f: f["overrides"].update(gmm3d={}), "figure2.overrides.gmm3d: not one of"),
        (
            lambda f: f["overrides"].update(gmm2d_quadratic={"train": {"lr": "fast"}}),
            "runs_full/figure2/gmm2d_quadratic/.*train.lr",
        ),
    ],
)
def test_figure2_errors_name_the_key(edit, key):
    config = yaml.safe_load(open("config/full.yaml"))
    edit(config["figure2"])
    with pytest.raises(ConfigError, match=key):
        validate_grid(config)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["methods"].update(drafty={}), "methods.drafty"),
        (lambda c: c["variants"].update(x={"name": "nope"}), "variants.x.name"),
        (lambda c: c["variants"].update(draft={"name": "draft"}), "variants.draft"),
        (lambda c: c["grid"].update(methods=["draft", "nope"]), "unknown method tag 'nope'"),
        (lambda c: c["methods"].update(draft={"grad_steps": 0}), "grad_steps"),
        (lambda c: c["variants"].update(bad={"name": "draft", "grad_step": 2}), "grad_step"),
        (lambda c: c["variants"].update(bad={"name": "draft", "train": {"lr": -1}}), "train.lr"),
        (lambda c: c["grid"]["problems"].append({"nme": "x"}), r"grid.problems\[3\]"),
        (lambda c: c["grid"]["problems"].append({"name": "x", "seeds": [1]}), "seeds: unknown"),
        (
            lambda c: c["grid"]["problems"].append({"name": "x", "methods": ["nope"]}),
            r"grid.problems\[3\].methods: unknown method tag 'nope'",
        ),
        (lambda c: c["grid"]["problems"].append({"name": "x", "reward_scales": []}), "non-empty"),
    ],
)
def test_grid_errors_name_the_key(edit, key):
    config = yaml.safe_load(open("config/config.yaml"))
    edit(config)
    with pytest.raises(ConfigError, match=key):
        validate_grid(config)


def test_runs_dir_moves_every_run():
    """Each config names its own ``runs_dir`` (default ``runs``): moving it moves every run, and
    no two shipped configs share a run directory (a run whose config changed restarts from
    scratch)."""
    config = yaml.safe_load(open("config/full.yaml"))
    full = set(run_configs(config))
    config["runs_dir"] = "runs_other/"
    moved = set(run_configs(config))
    assert len(moved) == len(full)
    assert moved == {"runs_other/" + d.removeprefix("runs_full/") for d in full}
    assert any(d.startswith("runs_other/figure2/") for d in moved)
    default = set(run_configs(yaml.safe_load(open("config/config.yaml"))))
    assert all(d.startswith("runs/") for d in default)
    for name in ("smoke.yaml", "full.yaml"):
        other = yaml.safe_load(open(f"config/{name}"))
        assert not set(run_configs(other)) & default, name


@pytest.mark.parametrize("value", ["/tmp/runs", "../runs", "", "runs/{x}", 3])
def test_bad_runs_dir_names_the_key(value):
    config = yaml.safe_load(open("config/config.yaml"))
    config["runs_dir"] = value
    with pytest.raises(ConfigError, match="runs_dir"):
        validate_grid(config)
