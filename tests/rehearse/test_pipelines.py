"""The rehearsal's pipeline writer at tiny widths: the hub's layout, read back by diffusers and
by the suite's own loader."""

import json
import re

import pytest
import torch
from safetensors import safe_open

from amcli.rehearse.configs import config
from amcli.rehearse.pipelines import FAMILIES, REPO_IDS, write_pipeline

CLIP_FILES = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    return {family: write_pipeline(family, root / family, scale="tiny") for family in FAMILIES}


def _index(written, family):
    return json.loads((written[family].folder / "model_index.json").read_text())


def _dtypes(path):
    with safe_open(path, "pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


def test_model_index_names_the_published_components(written):
    sd15, sd35m, flux = (_index(written, f) for f in ("sd15", "sd35m", "flux"))
    assert sd15["_class_name"] == "StableDiffusionPipeline"
    assert sd15["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert sd15["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert sd15["requires_safety_checker"] is True
    assert sd15["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert sd35m["_class_name"] == "StableDiffusion3Pipeline"
    assert sd35m["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    # T5 omitted as diffusers writes a None component
    assert sd35m["text_encoder_3"] == [None, None] and sd35m["tokenizer_3"] == [None, None]
    assert flux["_class_name"] == "FluxPipeline"
    assert flux["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    for family, w in written.items():
        index = _index(written, family)
        saved = {k for k, v in index.items() if isinstance(v, list) and None not in v}
        assert saved == {p.name for p in w.folder.iterdir() if p.is_dir()}, family


def test_schedulers_are_configured_as_published(written):
    def scheduler(family):
        return json.loads((written[family].folder / "scheduler/scheduler_config.json").read_text())

    sd15 = scheduler("sd15")
    expected = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1,
                "prediction_type": "epsilon", "num_train_timesteps": 1000}  # fmt: skip
    assert {k: sd15[k] for k in expected} == expected
    assert scheduler("sd35m")["shift"] == 3.0 and not scheduler("sd35m")["use_dynamic_shifting"]
    flux = scheduler("flux")
    expected = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                "base_image_seq_len": 256, "max_image_seq_len": 4096, "shift": 3.0}  # fmt: skip
    assert {k: flux[k] for k in expected} == expected


def test_sd15_has_fp16_files_beside_the_float32_ones(written):
    folder = written["sd15"].folder
    for name, stem in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model"), ("safety_checker", "model")]:  # fmt: skip
        assert _dtypes(folder / name / f"{stem}.safetensors") == {"F32"}, name
        assert _dtypes(folder / name / f"{stem}.fp16.safetensors") == {"F16"}, name
    assert written["sd15"].variant == "fp16"


def test_every_tensor_is_in_the_dtype_of_the_hubs_files(written):
    expected = {"sd15": {"F32"}, "sd35m": {"F16"}, "flux": {"BF16"}}
    for family, dtypes in expected.items():
        for path in written[family].folder.glob("*/*.safetensors"):
            if ".fp16." not in path.name:
                assert _dtypes(path) == dtypes, path


def test_flux_transformer_and_t5_are_sharded_with_a_consistent_index(written):
    folder = written["flux"].folder
    for name, stem in [("transformer", "diffusion_pytorch_model"), ("text_encoder_2", "model")]:
        index = json.loads((folder / name / f"{stem}.safetensors.index.json").read_text())
        shards = sorted(p.name for p in (folder / name).glob("*.safetensors"))
        assert len(shards) >= 2 and sorted(set(index["weight_map"].values())) == shards
        assert all(re.fullmatch(rf"{stem}-\d{{5}}-of-\d{{5}}\.safetensors", s) for s in shards)
        keys, size = set(), 0
        for shard in shards:
            with safe_open(folder / name / shard, "pt") as f:
                for key in f.keys():
                    assert index["weight_map"][key] == shard
                    keys.add(key)
                    size += f.get_tensor(key).nbytes
        assert keys == set(index["weight_map"]) and size == index["metadata"]["total_size"]
        assert _dtypes(folder / name / shards[0]) == {"BF16"}
    # as the hub's: the other components whole
    assert (folder / "vae/diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "text_encoder/model.safetensors").is_file()


def test_clip_tokenizer_folders_are_the_hubs_four_files(written):
    for family, folder in [("sd15", "tokenizer"), ("sd35m", "tokenizer"),
                           ("sd35m", "tokenizer_2"), ("flux", "tokenizer")]:  # fmt: skip
        path = written[family].folder / folder
        assert sorted(p.name for p in path.iterdir()) == CLIP_FILES, (family, folder)
    pads = [json.loads((written["sd35m"].folder / f / "special_tokens_map.json").read_text())
            for f in ("tokenizer", "tokenizer_2")]  # fmt: skip
    assert [p["pad_token"] for p in pads] == ["<|endoftext|>", "!"]


def test_full_configs_have_the_published_parameter_counts():
    # the well-known sizes, counted on the meta device (no memory)
    from diffusers import AutoencoderKL, SD3Transformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    def count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        assert count(UNet2DConditionModel(**config("sd15_unet", "full"))) == 859_520_964
        assert count(AutoencoderKL(**config("sd15_vae", "full"))) == 83_653_863
        sd3 = SD3Transformer2DModel(**config("sd35m_transformer", "full"))
        # with the 384 x 384 positional table it saves: SD 3.5 medium's 2.5B
        table = sd3.pos_embed.pos_embed.numel()
        assert round((count(sd3) + table) / 1e9, 2) == 2.47
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**config("clip_g", "full")))
        assert round(count(clip_g) / 1e6) == 695


def test_diffusers_loads_each_folder(written):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(written["sd15"].folder, variant="fp16")
    assert pipe.text_encoder.dtype == torch.float16
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # a None component must be named again (what the suite's loader does)
    with pytest.raises(ValueError, match="text_encoder_3"):
        DiffusionPipeline.from_pretrained(written["sd35m"].folder)
    pipe = DiffusionPipeline.from_pretrained(
        written["sd35m"].folder, text_encoder_3=None, tokenizer_3=None
    )
    assert pipe.text_encoder_3 is None and pipe.tokenizer_2.pad_token == "!"
    pipe = DiffusionPipeline.from_pretrained(written["flux"].folder, dtype=torch.bfloat16)
    assert pipe.transformer.config.num_single_layers == 2
    assert len(pipe.tokenizer_2) == 32100 and pipe.tokenizer_2.model_max_length == 512


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_suites_loader_sets_each_up(written, family):
    from am.t2i.loading import load_pipeline
    from am.t2i.setup import text_to_image

    variant = written[family].variant
    pipe = load_pipeline(str(written[family].folder), "float32", "cpu", variant=variant)
    # never used in fine-tuning; in pipe(...) it would black out the images it flags
    assert getattr(pipe, "safety_checker", None) is None
    setup = text_to_image(pipe, ["a photo of a cat", "a dog, 3 legs"],
                          lambda images, prompts: images.mean(dim=(1, 2, 3)), height=16, width=16)  # fmt: skip
    kw = setup.finetune_kwargs()
    cond = kw["conditions"](2, torch.Generator().manual_seed(0))
    velocity = kw["base"](torch.randn(2, *kw["sample_shape"]), torch.full((2,), 0.3), cond)
    assert velocity.shape == (2, *kw["sample_shape"]) and torch.isfinite(velocity).all()
    assert kw["reward"](torch.randn(2, *kw["sample_shape"]), cond).shape == (2,)


def test_a_missing_variant_is_refused_before_loading(written):
    from am.t2i.loading import ModelNotFoundError, check_variant
    from amcli.t2i import ModelSpec, T2IConfig
    from amcli.t2i_checks import ResourceError, check_model

    check_variant(str(written["sd15"].folder), "fp16")
    with pytest.raises(ModelNotFoundError, match=r"(?s)variant 'fp16'.*flux/transformer"):
        check_variant(str(written["flux"].folder), "fp16")
    # what the CLI checks of a config's model.variant
    sd15 = T2IConfig(model=ModelSpec(path=str(written["sd15"].folder), variant="fp16"))
    assert check_model(sd15) == "StableDiffusionPipeline"
    flux = T2IConfig(model=ModelSpec(path=str(written["flux"].folder), variant="fp16"))
    with pytest.raises(ResourceError, match="model.variant: "):
        check_model(flux)


def test_cli_writes_a_hub_cache_the_suite_resolves_by_id(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from am.t2i.loading import model_family, resolve_model
    from amcli.t2i import main

    argv = ["rehearse", "write", "--out", str(tmp_path), "--families", "sd35m", "--scale", "tiny",
            "--layout", "hub-cache"]  # fmt: skip
    assert main(argv) == 0
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    folder = resolve_model(REPO_IDS["sd35m"])
    assert folder.parent.name == "snapshots" and (folder / "transformer/config.json").is_file()
    assert model_family(REPO_IDS["sd35m"]) == "StableDiffusion3Pipeline"
    record = json.loads((tmp_path / "rehearsal.json").read_text())["pipelines"]["sd35m"]
    assert record["folder"] == str(folder) and record["dtype"] == "float16"
    assert record["bytes"] > 0 and record["parameters"]["transformer"] > 0


def test_cli_scorers_hook_writes_into_out_scorers(tmp_path, monkeypatch):
    import sys
    import types

    from amcli.t2i import main

    calls = []
    fake = types.ModuleType("amcli.rehearse.scorers")
    fake.write_scorers = lambda folder, *, scale: calls.append((folder, scale)) or {"AM_WEIGHTS": 1}
    monkeypatch.setitem(sys.modules, "amcli.rehearse.scorers", fake)
    argv = ["rehearse", "write", "--out", str(tmp_path), "--families", "flux", "--scale", "tiny",
            "--scorers"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [(tmp_path / "scorers", "tiny")]
    record = json.loads((tmp_path / "rehearsal.json").read_text())
    assert record["scorers"]["settings"] == {"AM_WEIGHTS": 1} and "flux" in record["pipelines"]
