"""``python -m amcli.t2i sample`` with the pipelines' own schedulers equals ``pipe(...)``, and the
training grids against diffusers' timesteps (docs/text_to_image.md, "Samplers and grids").

The reference is diffusers itself: the pipeline loaded from the same directory, the scheduler
swapped in with ``from_config`` as a diffusers user does, called per batch with one generator
seeded as ``sample.seed``, images as ``pipe(...)``'s PIL output. The CLI's PNGs must be within
one uint8 level of them, on tiny SD 1.5, SD3 and Flux pipelines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("diffusers")

import diffusers  # noqa: E402
from PIL import Image  # noqa: E402

from am.sde import uniform_grid  # noqa: E402
from am.t2i.loading import load_pipeline  # noqa: E402
from am.t2i.sampling import PipelineSampler, parse_sampler  # noqa: E402
from am.t2i.schedules import schedule_from_scheduler  # noqa: E402
from amcli.config import ConfigError  # noqa: E402
from amcli.t2i import main, parse_t2i_config  # noqa: E402

PROMPTS = ["a red cube", "two cats"]
SIZE = {"sd15": 16, "sd3": 16, "flux": 32}
CASES = [  # family, sample.scheduler, the scheduler class a diffusers user swaps in, eta, betas
    ("sd15", "ddim:0.5", "DDIMScheduler", 0.5, None),
    ("sd15", "ddpm", "DDPMScheduler", None, None),
    ("sd15", "pipeline", None, None, None),
    ("sd15", "ddim", "DDIMScheduler", 0.0, (0.002, 0.009)),  # the authors' fine-tuning betas
    ("sd3", "flow_match_euler", "FlowMatchEulerDiscreteScheduler", None, None),
    ("flux", "pipeline", None, None, None),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipelines")
    for family in SIZE:
        assert main(["make-tiny", family, str(tmp / family)]) == 0
    (tmp / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return tmp


def config(models: Path, family: str, betas=None, **sample) -> Path:
    size = SIZE[family]
    data = {
        "model": {
            "path": str(models / family),
            "height": size,
            "width": size,
            **({"betas": list(betas)} if betas else {}),
        },  # fmt: skip
        "reward": {"terms": {"aesthetic": 1.0}},
        "prompts": {"train": "prompts.txt", "eval": "prompts.txt"},
        "method": {"name": "adjoint_matching", "num_steps": 4},
        "train": {"iterations": 1, "batch_size": 2, "lr": 1e-4},
        "sample": {"per_prompt": 2, "num_steps": 4, "batch_size": 3, "seed": 5, **sample},
        "device": "cpu",
    }
    path = models / f"{family}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def diffusers_images(models, family, scheduler_class, eta, betas, guidance):
    """What ``pipe(...)`` gives for the CLI's batches (3 rows, then 1), one generator."""
    pipe = load_pipeline(str(models / family), "float32", torch.device("cpu"))
    if scheduler_class is not None:
        new = {} if betas is None else {"beta_start": betas[0], "beta_end": betas[1]}
        pipe.scheduler = getattr(diffusers, scheduler_class).from_config(
            pipe.scheduler.config, **new
        )
    jobs = [p for p in PROMPTS for _ in range(2)]
    generator = torch.Generator("cpu").manual_seed(5)
    extra = {"eta": eta} if eta is not None else {}
    if family == "flux":  # Flux's classifier-free guidance is its true_cfg_scale
        extra.update(true_cfg_scale=guidance, negative_prompt="")
    else:
        extra["guidance_scale"] = guidance
    images = []
    for start in range(0, len(jobs), 3):
        out = pipe(prompt=jobs[start : start + 3], num_inference_steps=4, height=SIZE[family],
                   width=SIZE[family], generator=generator, **extra)  # fmt: skip
        images += [np.asarray(image) for image in out.images]
    return images


@pytest.mark.parametrize("family,spec,scheduler_class,eta,betas", CASES)
def test_sample_equals_the_pipeline_call(
    models, family, spec, scheduler_class, eta, betas, tmp_path
):
    out = tmp_path / "samples"
    cfg = config(models, family, betas, scheduler=spec, guidance=2.0)
    assert main(["sample", str(cfg), "--out", str(out)]) == 0
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta["prompt"]) == [p for p in PROMPTS for _ in range(2)]
    ours = [np.asarray(Image.open(out / name)) for name in meta["file_name"]]
    ref = diffusers_images(models, family, scheduler_class, eta, betas, 2.0)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert not all(np.array_equal(ours[0], r) for r in ref[1:])  # images differ per row


def test_bad_sampler_settings_are_one_line_config_errors(models):
    data = yaml.safe_load(config(models, "sd15").read_text())
    for sample, key in [
        ({"scheduler": "euler"}, "sample.scheduler: unknown sampler 'euler'"),
        ({"scheduler": "ddpm:0.5"}, "sample.scheduler: only ddim takes an eta"),
        ({"scheduler": "ddim:2"}, "sample.scheduler: eta must be in"),
        ({"scheduler": "ddim", "diffusion": "memoryless"}, "sample.diffusion:"),
        ({"scheduler": "ddim", "guidance": 0.5}, "sample.guidance:"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(")):
            parse_t2i_config({**data, "sample": {**data["sample"], **sample}}, models)
    assert parse_sampler("ddim:1") == PipelineSampler("ddim", 1.0)


def test_a_scheduler_of_the_other_family_is_refused(models, tmp_path, capsys):
    cfg = config(models, "sd3", scheduler="ddim")
    assert main(["sample", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    # found from model_index.json before the pipeline loads (tests/t2i/test_t2i_errors.py)
    assert len(err) == 1 and "sample.scheduler: 'ddim' does not sample a StableDiffusion3" in err[0]


@pytest.mark.parametrize("K", [50, 40])
def test_sd15_training_grid_is_diffusers_trailing_grid(K):
    """Our uniform grid of K steps runs through diffusers' ``timestep_spacing="trailing"``
    timesteps (999, 979, ..., 19 for K = 50) and ends clean (t = 1, "timestep -1"); SD 1.5's
    shipped "leading" spacing with steps_offset 1 starts 18 timesteps later (981, ..., 1)."""
    config = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  steps_offset=1, set_alpha_to_one=False)  # fmt: skip
    trailing = diffusers.DDIMScheduler(**config, timestep_spacing="trailing")
    trailing.set_timesteps(K)
    ours = schedule_from_scheduler(trailing).time_to_timestep(uniform_grid(K, dtype=torch.float64))
    torch.testing.assert_close(ours[:-1], trailing.timesteps.double())
    assert float(ours[-1]) == -1.0
    leading = diffusers.DDIMScheduler(**config)
    leading.set_timesteps(K)
    assert int(leading.timesteps[0]) == int(trailing.timesteps[0]) - (1000 // K - 2)


def test_sd3_training_grid_against_diffusers():
    """diffusers: ``K - 1`` steps on the shifted grid from 1 to ``sigma_min`` (its first point of
    the shifted training grid, shifted once more), then one step to 0; ours: ``K`` steps uniform
    in ``s = 1 - u`` from 1 to 0, shifted. Same first and last point, the same shift map."""
    K, shift = 40, 3.0
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(K)
    theirs = scheduler.sigmas.double()
    ours = schedule_from_scheduler(scheduler).sigma(uniform_grid(K, dtype=torch.float64))

    def shifted(s):
        return shift * s / (1 + (shift - 1) * s)

    s_min = shifted(torch.tensor(1 / 1000, dtype=torch.float64))  # the training grid's last
    torch.testing.assert_close(theirs[:-1], shifted(torch.linspace(1, s_min, K, dtype=torch.float64)), rtol=1e-5, atol=1e-6)  # fmt: skip
    assert float(theirs[-1]) == 0.0 and float(ours[-1]) == 0.0 and float(ours[0]) == 1.0
    assert float(theirs[-2]) == pytest.approx(0.00893, abs=1e-5)  # diffusers' last nonzero
    assert float(ours[-2]) == pytest.approx(shifted(torch.tensor(1 / K)).item())  # 0.0714
    assert float((ours - theirs).abs().max()) == pytest.approx(0.0626, abs=1e-3)
