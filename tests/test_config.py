"""Config parsing at the YAML edge: unknown keys, bad values and types name the dotted key."""

import pytest
import torch
import yaml

from amcli.__main__ import main
from amcli.config import ConfigError, parse_run_config, run_config_to_dict
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


def test_defaults_and_round_trip():
    cfg = parse_run_config(
        {"method": {"name": "adjoint_matching", "num_steps": 12, "steps": {"mode": "paper"}}}
    )
    assert cfg.method_config.num_steps == 12 and cfg.method_config.steps.mode == "paper"
    again = parse_run_config(yaml.safe_load(yaml.safe_dump(run_config_to_dict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"lr": "abc"}}, "train.lr"),
        ({"train": {"iterations": -5}}, "train.iterations"),
        ({"train": {"iterations": 2.5}}, "train.iterations"),
        ({"problem": {"reward_scale": "lambda"}}, "problem.reward_scale"),
        ({"problem": {"reward_scale": float("nan")}}, "reward_scale"),
        ({"problem": {"schedule": "linear"}}, "unknown schedule 'linear'"),
        ({"problem": {"name": "gmm3d"}}, "unknown problem 'gmm3d'"),
        ({"method": {"num_steps": -1}}, "num_steps"),
        ({"method": {"num_stepz": 10}}, "unknown key(s) ['num_stepz']"),
        ({"method": {"name": "drafty"}}, "method.name: unknown method 'drafty'; valid"),
        ({"method": {"steps": {"mode": "most"}}}, "method.steps"),
        ({"method": {"diffusion": "ddim"}}, "method.diffusion"),
        ({"method": {"grid_warp": 1.0}}, "grid_warp"),
        ({"trian": {}}, "unknown key(s) ['trian']"),
        ({"eval": {"samplers": ["ode", "sde"]}}, "sampler"),
        ({"eval": {"floor_repeats": 0}}, "floor_repeats"),
        ({"eval": {"floor_repeats": 2.5}}, "eval.floor_repeats"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        parse_run_config(data)
    assert key in str(err.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"model": {"depth": 0}}, "model.depth"),
        ({"model": {"time_features": -1}}, "model.time_features"),
        ({"problem": {"schedule": "linear"}}, "problem.schedule"),
        ({"method": {"steps": {"mode": "most"}}}, "method.steps.mode"),
        ({"method": {"steps": {"num_last": -1}}}, "method.steps.num_last"),
        ({"method": {"stepper": "rk4"}}, "method.stepper"),
        ({"method": {"drop_quantile": 2.0}}, "method.drop_quantile"),
        ({"method": {"name": "basic_adjoint_matching", "adjoint": "lean"}}, "method.adjoint"),
        ({"method": {"name": "draft", "num_steps": 4, "grad_steps": 5}}, "method.grad_steps"),
        ({"train": {"log_every": 0}}, "train.log_every"),
        ({"train": {"batch_size": 4, "micro_batches": 3}}, "train.micro_batches"),
        ({"eval": {"repeats": 0}}, "eval.repeats"),
        ({"eval": {"samplers": ["sde"]}}, "eval.samplers"),
        ({"tag": "a/b"}, "tag"),
    ],
)
def test_the_error_starts_with_the_exact_key(data, key):
    """Each field's check raises :class:`am.fields.FieldError` naming its field, so the key is
    exact even where the message starts with another word (or another field's name)."""
    with pytest.raises(ConfigError) as err:
        parse_run_config(data)
    assert str(err.value).startswith(key + ": "), str(err.value)


def test_yaml_exponent_without_dot_is_a_number():
    assert parse_run_config({"train": {"lr": "3e-4"}}).train.lr == 3e-4


def test_cli_check_reports_bad_config(tmp_path, capsys):
    p = tmp_path / "run.yaml"
    p.write_text("train: {batch_size: 0}\n")
    assert main(["check", str(p)]) == 2
    assert "train" in capsys.readouterr().err


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


def test_finetune_restarts_when_the_run_config_changes(tmp_path, caplog):
    from amcli.run import finetune

    def notices() -> str:  # what amcli logged since the last call
        text = caplog.text
        caplog.clear()
        return text

    small = {
        "method": {"num_steps": 4},
        "model": {"hidden": 8, "depth": 1, "time_features": 2},
        "train": {"iterations": 2, "batch_size": 8, "checkpoint_every": 1},
    }
    finetune(parse_run_config(small), tmp_path, progress=False)
    small["train"]["lr"] = 5e-4
    small["train"]["iterations"] = 3
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "starting the run afresh" in notices()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [yaml.safe_load(x)["iteration"] for x in lines] == [1, 2, 3]
    # a change of the eval section alone keeps the trained run (nothing is retrained)
    weights = (tmp_path / "model.safetensors").read_bytes()
    small["eval"] = {"num_samples": 64, "repeats": 2}
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" not in notices()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["eval"]["repeats"] == 2
    # a config.yaml (and checkpoint) written before a field existed: the field at its default
    # keeps the run; the same field changed restarts it
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del old["method"]["grid_warp"], old["train"]["ema_decay"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["method_config"]["grid_warp"], state["config"]["ema_decay"]
    torch.save(state, tmp_path / "checkpoint.pt")
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" not in notices()
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    small["method"]["grid_warp"] = 0.3
    finetune(parse_run_config(small), tmp_path, progress=False)
    assert "afresh" in notices()


def test_evaluate_averages_distance_over_independent_pairs(tmp_path):
    """distance = mean over `repeats` (fresh draw, fresh target set) pairs, like the floor; an
    untrained (zero-residual) model is the base, so its distance is the base's, up to noise."""
    import json

    from amcli.run import evaluate, finetune

    cfg = parse_run_config(
        {
            "method": {"num_steps": 4},
            "model": {"hidden": 8, "depth": 1, "time_features": 2},
            "train": {"iterations": 1, "batch_size": 8, "lr": 1e-12},
            "eval": {"num_samples": 400, "sampling_steps": 50, "repeats": 4},
        }
    )
    finetune(cfg, tmp_path, progress=False)
    ev = evaluate(cfg, tmp_path)
    assert ev["repeats"] == 4
    for res in ev["samplers"].values():
        assert res["distance_sd"] > 0  # four different pairs
        assert res["ratio_to_floor"] == res["distance"] / ev["noise_floor"]
        # the base is W1 ~ 2.3 from the tilt; four 400-sample pairs average to within 0.2
        assert abs(res["distance"] - ev["base_distance"]) < 0.2
        assert sum(res["mode_weights"]) == pytest.approx(1.0)
    assert json.loads((tmp_path / "eval.json").read_text())["repeats"] == 4

    # the floor over its own number of pairs; the ratio's standard error from both spreads
    from am.metrics import noise_floor_pairs
    from am.problems.benchmarks import make_problem
    from am.schedules import FlowMatchingSchedule

    more = parse_run_config(
        {**run_config_to_dict(cfg), "eval": {**run_config_to_dict(cfg)["eval"], "floor_repeats": 9}}
    )
    ev9 = evaluate(more, tmp_path)
    assert (ev9["repeats"], ev9["floor_repeats"]) == (4, 9)
    gt = make_problem("gmm1d_linear", FlowMatchingSchedule(), 1.0)
    # the floor has a generator of its own (eval.seed + 3), so that it can be computed once and
    # shared by the runs of a problem without changing their other draws
    g = torch.Generator().manual_seed(more.eval.seed + 3)
    pairs = noise_floor_pairs(gt.target.sample, 400, metric="w1", generator=g, repeats=9)
    assert ev9["noise_floor"] == pytest.approx(sum(pairs) / 9, rel=1e-12)
    for res in ev9["samplers"].values():
        assert 0 < res["ratio_se"] < res["ratio_to_floor"]


def test_diverged_run_exports_last_good_checkpoint(tmp_path, monkeypatch):
    """A run whose loss turns non-finite finishes with its last good checkpoint exported and
    status.json / eval.json saying where it diverged (the workflow goes on)."""
    import json

    from am.train import NonFiniteError, Trainer
    from amcli.run import evaluate, finetune

    real_step = Trainer.step

    def step(self):
        if self.iteration == 3:  # the 4th iteration "diverges"
            raise NonFiniteError("non-finite loss at iteration 4")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    cfg = parse_run_config(
        {
            "method": {"name": "draft", "num_steps": 4},
            "model": {"hidden": 8, "depth": 1, "time_features": 2},
            "train": {"iterations": 6, "batch_size": 8, "checkpoint_every": 2},
            "eval": {"num_samples": 50, "sampling_steps": 4, "repeats": 1},
        }
    )
    finetune(cfg, tmp_path, progress=False)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged"
    assert status["diverged_at"] == 4 and status["exported_iteration"] == 2
    ev = evaluate(cfg, tmp_path)
    assert ev["diverged_at"] == 4 and ev["exported_iteration"] == 2


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


def test_a_shared_noise_floor_gives_the_same_evaluation(tmp_path):
    """The workflow computes each problem's noise floor once (`python -m amcli floor`) and every
    run's evaluation reads it: the evaluation is then the same, number for number, as one that
    computes its floor itself; a floor of other settings is refused, naming the key; runs that
    differ only in training share the floor's key."""
    import json

    from amcli.run import evaluate, floor_key, noise_floor_record

    small = {
        "problem": {"name": "gmm2d_overlap_quadratic"},
        "method": {"num_steps": 4},
        "model": {"hidden": 8, "depth": 1, "time_features": 2},
        "train": {"iterations": 2, "batch_size": 8},
        "eval": {"num_samples": 300, "sampling_steps": 8, "repeats": 2, "floor_repeats": 3},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(small))
    run_dir = tmp_path / "run"
    assert main(["finetune", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir)]) == 0
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir)]) == 0
    inline = (run_dir / "eval.json").read_text()
    floor = tmp_path / "floor.json"
    assert main(["floor", str(tmp_path / "run.yaml"), "--out", str(floor)]) == 0
    assert len(json.loads(floor.read_text())["pairs"]) == 3
    cmd = ["evaluate", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir), "--floor", str(floor)]
    assert main(cmd) == 0
    assert (run_dir / "eval.json").read_text() == inline
    cfg = parse_run_config(small)
    other = parse_run_config({**small, "train": {"iterations": 5, "lr": 1e-4}})
    assert floor_key(other) == floor_key(cfg)
    bigger = parse_run_config({**small, "eval": {**small["eval"], "num_samples": 400}})
    with pytest.raises(ValueError, match="num_samples"):
        evaluate(cfg, run_dir, noise_floor_record(bigger))
