"""ImageReward's checkpoint is checked strictly, from its keys and shapes, before anything is
built: a missing block, an extra key, a wrong shape, another architecture are each refused with
the file and a key named (tiny official-format files, written with ``test_imagereward``'s
helpers)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from test_imagereward import MED, tiny_imagereward, to_official  # noqa: E402

from am.vision import imagereward as ir  # noqa: E402
from am.vision.checkpoints import WeightsMismatchError  # noqa: E402


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("blip.visual_encoder.blocks.1.")],
         ("missing", "vision.encoder.layers.1.")),
        (lambda s: s.update({"blip.itm_head.weight": torch.zeros(2, 32)}),
         ("unexpected", "blip.itm_head.weight")),
        (lambda s: s.update({"mlp.layers.0.weight": torch.zeros(1024, 16)}),
         ("wrong shape", "head.0.weight")),
    ],
    ids=["missing-block", "extra-key", "wrong-shape"],
)  # fmt: skip
def test_file_is_checked_strictly_naming_file_and_key(tmp_path, edit, needles):
    scorer = tiny_imagereward(tmp_path)
    official = to_official(scorer)
    ir.check_imagereward_file(_save(tmp_path, official), scorer.vision.config, scorer.text.config)
    edit(official)
    file = _save(tmp_path, official)
    with pytest.raises(WeightsMismatchError) as err:
        ir.check_imagereward_file(file, scorer.vision.config, scorer.text.config)
    for needle in (str(file), "ImageReward", *needles):
        assert needle in str(err.value), (needle, str(err.value))


def _save(directory, state):
    torch.save(state, directory / "ImageReward.pt")
    return directory / "ImageReward.pt"


def test_from_pretrained_refuses_a_file_of_another_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path / "weights"))
    scorer = tiny_imagereward(tmp_path)  # writes vocab.txt into tmp_path
    file = _save(tmp_path, to_official(scorer))
    (tmp_path / "med_config.json").write_text(json.dumps(MED))
    with pytest.raises(WeightsMismatchError, match="wrong shape") as err:
        ir.ImageRewardScorer.from_pretrained(tmp_path, tokenizer_path=tmp_path)
    assert str(file) in str(err.value) and "vision.embeddings." in str(err.value)
