"""DreamSim's files are checked strictly: a mis-keyed LoRA (which peft only warns about), a
DINO backbone of the wrong shape and missing adapter weights are each refused with the file and
a key named, at load time and by ``resources --check`` (the tiny ensemble of
``test_dreamsim``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("dreamsim")
pytest.importorskip("peft")

from test_dreamsim import tiny_vit, write_tiny_dreamsim  # noqa: E402

from am.vision.dreamsim import DreamSimEmbedder  # noqa: E402
from am.vision.resources import MissingWeightsError  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning"),
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_dreamsim(tmp_path_factory.mktemp("dreamsim"))


def _copy(weights: Path, target: Path) -> Path:
    import shutil

    return Path(shutil.copytree(weights, target))


def test_refuses_mis_keyed_lora(weights, tmp_path):
    from safetensors.torch import load_file, save_file

    from am.vision.checkpoints import WeightsMismatchError

    directory = _copy(weights, tmp_path / "ds")
    file = directory / "ensemble_lora" / "adapter_model.safetensors"
    state = load_file(file)
    key = sorted(state)[0]
    state[key.replace("qkv", "proj")] = state.pop(key)  # peft would only warn
    save_file(state, file)
    with pytest.raises(WeightsMismatchError) as err:
        DreamSimEmbedder.from_files(directory, vit=tiny_vit)
    message = str(err.value)
    for needle in (str(file), "LoRA", "missing 1", key, "unexpected 1", key.replace("qkv", "proj")):
        assert needle in message, (needle, message)


def test_refuses_wrong_shape_dino_backbone(weights, tmp_path):
    from am.vision.checkpoints import WeightsMismatchError

    directory = _copy(weights, tmp_path / "ds")
    file = directory / "checkpoints" / "dino_vitbase16_pretrain.pth"
    state = torch.load(file, weights_only=True)
    state["pos_embed"] = state["pos_embed"][:, :-1]
    torch.save(state, file)
    with pytest.raises(WeightsMismatchError, match="pos_embed") as err:
        DreamSimEmbedder.from_files(directory, vit=tiny_vit)
    assert str(file) in str(err.value) and "wrong shape" in str(err.value)


def test_missing_adapter_weights_named(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    directory = _copy(weights, tmp_path / "ds")
    (directory / "ensemble_lora" / "adapter_model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="ensemble_lora/adapter_model.safetensors or"):
        DreamSimEmbedder.from_pretrained(directory)


def test_resources_check_validates_the_ensemble_files(weights, tmp_path):
    from safetensors.torch import load_file, save_file

    from am.vision.checkpoints import WeightsMismatchError
    from am.vision.validate import check_dreamsim_dir

    check_dreamsim_dir(weights, vit=tiny_vit)  # the fitting files pass
    directory = _copy(weights, tmp_path / "ds")
    file = directory / "ensemble_lora" / "adapter_model.safetensors"
    state = load_file(file)
    key = sorted(state)[-1]
    state[key.replace("blocks", "block")] = state.pop(key)
    save_file(state, file)
    with pytest.raises(WeightsMismatchError, match="unexpected 1 key") as err:
        check_dreamsim_dir(directory, vit=tiny_vit)
    assert str(file) in str(err.value) and key in str(err.value)
