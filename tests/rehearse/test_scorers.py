"""The rehearsal's scorers (amcli.rehearse.scorers) at tiny widths: each resource's files and
containers are the official release's, the suite's own loaders (``load_scorer``,
``load_dreamsim``: what ``python -m amcli.score_images`` calls) load every one strictly and
score, ImageReward's file scores as BLIP's own forward computes it from the official key names,
and dreamsim's own ``dreamsim()`` reads the DreamSim folder. The full sizes' key tables are
checked against the official architectures without writing gigabytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("open_clip")
pytest.importorskip("dreamsim")

from am.vision import SCORERS, load_dreamsim, load_scorer  # noqa: E402
from am.vision.checkpoints import check_shapes, module_shapes, read_shapes  # noqa: E402
from am.vision.resources import RESOURCES, locate  # noqa: E402
from amcli.rehearse import scorer_dreamsim as ds  # noqa: E402
from amcli.rehearse.scorer_imagereward import MED_CONFIG, bert_tokens, official_spec  # noqa: E402
from amcli.rehearse.scorers import loader_overrides, write_scorers  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning"),
]
CLIP_FILES = {"config.json", "model.safetensors"}
TOKENIZER = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}
OPENAI = CLIP_FILES | TOKENIZER | {"preprocessor_config.json"}
LAYOUT = {  # resource -> its files, as the release (hub repository, zip, torch.hub) has them
    "clip-vit-large-patch14": OPENAI,
    "clip-vit-base-patch32": OPENAI,
    "pickscore": CLIP_FILES,
    "clip-vit-h-14-processor": TOKENIZER | {"preprocessor_config.json"},
    "hpsv2.1": {"HPS_v2.1_compressed.pt"},
    "hpsv2.0": {"HPS_v2_compressed.pt"},
    "imagereward": {"ImageReward.pt", "med_config.json"},
    "bert-base-uncased": {"vocab.txt", "tokenizer_config.json"},
    "aesthetic": {"sac+logos+ava1-l14-linearMSE.pth"},
    "dreamsim": {
        "dino_vitb16_pretrain.pth", "clip_vitb16_pretrain.pth.tar",
        "open_clip_vitb16_pretrain.pth.tar", "ensemble_lora/adapter_config.json",
        "ensemble_lora/adapter_model.safetensors", "checkpoints/dino_vitbase16_pretrain.pth",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("scorers")
    return folder, write_scorers(folder, scale="tiny")


@pytest.fixture
def weights(written, monkeypatch) -> Path:
    monkeypatch.setenv("AM_WEIGHTS", str(written[0]))
    return written[0]


def test_every_resource_in_its_release_layout(weights, written):
    files = {p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file()}
    assert files == {f"{r}/{f}" for r, names in LAYOUT.items() for f in names}
    for name in RESOURCES:  # found where the suite looks ($AM_WEIGHTS/<name>)
        assert locate(name) == weights / name
    settings = written[1]
    assert settings["AM_WEIGHTS"] == str(weights.resolve())
    assert set(settings["reward"]["weights"]) == set(SCORERS)
    assert {s.split("=")[0] for s in settings["score_images"]} == {*SCORERS, "dreamsim"}


def test_clip_folders_have_the_hubs_config_and_buffers(weights):
    from safetensors import safe_open

    from am.vision.validate import validate

    for name in ("clip-vit-large-patch14", "clip-vit-base-patch32", "pickscore"):
        config = json.loads((weights / name / "config.json").read_text())
        assert config["text_config"]["eos_token_id"] == 2  # pooled at the highest id
        assert ("text_config_dict" in config) == name.startswith("clip-vit")
        act = config["text_config"]["hidden_act"]
        assert act == ("gelu" if name == "pickscore" else "quick_gelu")
        with safe_open(str(weights / name / "model.safetensors"), "pt") as f:
            assert f.metadata() == {"format": "pt"}
            ids = f.get_tensor("text_model.embeddings.position_ids")
        assert ids.dtype == torch.int64 and ids.tolist() == [list(range(77))]
    for name in ("clip-vit-large-patch14", "clip-vit-base-patch32", "pickscore", "aesthetic"):
        assert validate(name, weights / name) == ""  # `amcli.resources --check`'s check


def test_torch_files_are_the_releases_containers(weights):
    def load(path, **kw):
        return torch.load(weights / path, map_location="cpu", weights_only=True, **kw)

    reward = load("imagereward/ImageReward.pt")  # torch.save(model.state_dict())
    assert set(reward) == set(official_spec("tiny"))
    assert reward["blip.text_encoder.embeddings.position_ids"].dtype == torch.int64
    hps = load("hpsv2.1/HPS_v2.1_compressed.pt")
    assert list(hps) == ["state_dict"] and hps["state_dict"]["logit_scale"].dtype == torch.float16
    aesthetic = load("aesthetic/sac+logos+ava1-l14-linearMSE.pth")
    assert sorted(aesthetic) == sorted(f"layers.{i}.{w}" for i in (0, 2, 4, 6, 7) for w in ("weight", "bias"))  # fmt: skip
    assert list(load("dreamsim/dino_vitb16_pretrain.pth")) == ["student"]
    clip = load("dreamsim/clip_vitb16_pretrain.pth.tar")["state_dict"]
    assert clip["proj"].shape == (ds.SIZES["tiny"][0], ds.SIZES["tiny"][3])
    adapter = json.loads((weights / "dreamsim/ensemble_lora/adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["target_modules"]) == (16, 0.5, ["qkv"])
    if not torch.cuda.is_available():  # saved from a GPU: a CPU needs map_location
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(weights / "imagereward/ImageReward.pt", weights_only=True)
        torch.load(weights / "dreamsim/clip_vitb16_pretrain.pth.tar", weights_only=True)


def test_bert_vocabulary_has_berts_special_ids():
    tokens = bert_tokens()
    assert len(tokens) == len(set(tokens)) == MED_CONFIG["vocab_size"] - 2
    assert [tokens.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]  # fmt: skip
    assert {"photo", "cat", "horse"} <= set(tokens)


@pytest.mark.parametrize("name", [*SCORERS, "dreamsim"])
def test_the_suites_loader_loads_it_strictly_and_scores(weights, name):
    overrides = loader_overrides("tiny").get(name, {})
    images = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if name == "dreamsim":
            out = load_dreamsim(weights / "dreamsim", **overrides).embed(images)
            assert out.shape == (2, ds.SIZES["tiny"][0] + 2 * ds.SIZES["tiny"][3])
        else:
            scorer = load_scorer(name, written_path(weights, name), **overrides)
            out = scorer(images, ["a photo of a cat", "a red car"])
            assert out.shape == (2,)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def written_path(weights: Path, name: str) -> Path:
    from amcli.rehearse.scorers import SCORER_RESOURCES

    return weights / SCORER_RESOURCES[name]


def test_imagereward_file_scores_as_blips_forward_computes_it(weights):
    from am.vision.preprocess import Preprocess
    from tests.vision.test_imagereward import reference_score

    scorer = load_scorer("imagereward", **loader_overrides("tiny")["imagereward"])
    official = torch.load(weights / "imagereward/ImageReward.pt", map_location="cpu")
    images, prompts = torch.rand(2, 3, 40, 48), ["a photo of a cat", "the red car on a road"]
    with torch.no_grad():
        ids, mask = scorer.tokenize(prompts, images.device)
        reference = reference_score(official, Preprocess(size=32)(images), ids, mask)
        torch.testing.assert_close(scorer(images, prompts), reference, rtol=1e-4, atol=1e-4)


def test_dreamsim_reads_the_folder_itself(weights):
    from dreamsim.model import dreamsim

    from tests.vision.test_dreamsim import dreamsim_offline_stand_in

    ours = load_dreamsim(weights / "dreamsim", vit=ds.tiny_vit)
    with dreamsim_offline_stand_in():
        theirs, _ = dreamsim(pretrained=True, device="cpu", cache_dir=str(weights / "dreamsim"))
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.embed(images), theirs.embed(images), atol=1e-6, rtol=0)


def test_full_size_tables_match_the_official_architectures():
    from dreamsim.feature_extraction.vision_transformer import vit_base

    from am.vision import imagereward as ir

    vision = ir.vision_config_vit_large()
    text = ir.text_config_from_med(MED_CONFIG, vision.hidden_size)
    with torch.device("meta"):
        expected = module_shapes(ir.ImageRewardScorer(vision, text, None))
    shapes = {k: shape for k, (shape, _) in official_spec("full").items()}
    found = ir.convert_official_state_dict(shapes)
    check_shapes(found, expected, file="ImageReward.pt (table)", model="ImageReward")
    dino = vit_base(patch_size=16, num_classes=0)  # DINO's hub entry
    table = {k: shape for k, (shape, _) in ds.backbone_spec("full").items()}
    check_shapes(table, module_shapes(dino), file="dino (table)", model="ViT-B/16")
    dino.pos_drop = torch.nn.LayerNorm(768)  # what dreamsim's CLIP loaders load into
    table = {k: shape for k, (shape, _) in ds.clip_backbone_spec("full").items()}
    assert table.pop("proj") == (768, 512)
    check_shapes(table, module_shapes(dino), file="clip (table)", model="CLIP as DINO")


def test_refuses_unknown_scale_and_resource(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        write_scorers(tmp_path, scale="small")
    with pytest.raises(KeyError, match="hpsv2.2"):
        write_scorers(tmp_path, scale="tiny", only=["hpsv2.2"])
    assert not any(tmp_path.iterdir())


def test_safetensors_writer_streams_what_the_library_reads(tmp_path):
    from safetensors.torch import load_file

    from amcli.rehearse.scorer_files import random_state, save_torch, write_safetensors

    spec = {"b.weight": ((3, 5), torch.float16), "a.bias": ((4,), torch.float32)}
    spec["ids"] = ((1, 6), torch.int64)
    loaded = load_file(write_safetensors(tmp_path / "m.safetensors", spec, seed=3))
    state = random_state(spec, seed=3)
    assert all(torch.equal(loaded[k], state[k]) for k in spec) and set(loaded) == set(spec)
    assert read_shapes(tmp_path / "m.safetensors") == {k: s for k, (s, _) in spec.items()}
    registry = list(torch.serialization._package_registry)
    save_torch(state, tmp_path / "m.pt", location="cuda:0")
    assert torch.serialization._package_registry == registry  # the tag does not outlive it
