"""Tiny random models in the real architectures, for tests and benchmarks (no downloads).

Each builder makes the same classes the real checkpoints load into (transformers' CLIPModel,
open_clip's ViT-H-14 family), at a size that runs in milliseconds, and writes real files (a
character-level CLIP BPE vocabulary, ``save_pretrained`` directories) so that the loading code
paths run too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "write_clip_tokenizer",
    "tiny_clip_dir",
    "tiny_open_clip",
    "real_photos",
    "photos_at",
    "TEST_SIZES",
    "write_tiny_weights",
]


def write_clip_tokenizer(directory: str | Path) -> Path:
    """Write a character-level CLIP BPE tokenizer (``vocab.json``, ``merges.txt``: every byte
    symbol, alone and word-final, no merges) into ``directory``; returns it."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return directory


def tiny_clip_dir(directory: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """Save a tiny random ``CLIPModel`` (ViT patch 8, width 32, 2 layers; projection 16), its
    tokenizer and a ``CLIPProcessor`` config into ``directory``, like a Hub snapshot."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory = write_clip_tokenizer(directory)
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=77)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(
            common,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(common, image_size=image_size, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(directory)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(directory)
    return directory


def tiny_open_clip(*, seed: int = 0, image_size: int = 32):
    """A tiny random open_clip CLIP in the ViT-H-14 family (patch 8, width 32, 2 layers, text
    width 32, embedding 16), in eval mode, with open_clip's ViT-H-14 tokenizer."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(
        "ViT-H-14",
        pretrained=None,
        embed_dim=16,
        vision_cfg=dict(image_size=image_size, layers=2, width=32, head_width=8, patch_size=8),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=4, layers=2),
    )
    return model.eval(), open_clip.get_tokenizer("ViT-H-14")


def real_photos() -> torch.Tensor:
    """The two photographs scikit-learn ships (427 x 640, JPEG), as ``[2, 3, 427, 640]`` floats
    in [0, 1]: real-looking images with which to compare preprocessing pipelines."""
    from sklearn.datasets import load_sample_images

    images = torch.as_tensor(np.array(load_sample_images().images)).permute(0, 3, 1, 2)
    return images.to(torch.float32) / 255


# (H, W): square, landscape, portrait and a 9:16 portrait, the sizes the preprocessing tests use
TEST_SIZES = ((512, 512), (427, 640), (640, 427), (1024, 576))


def photos_at(height: int, width: int) -> torch.Tensor:
    """:func:`real_photos` resized with PIL (Lanczos) to ``height x width``, as 8-bit images
    ``[2, 3, height, width]`` (uint8): real-looking inputs of any size and aspect ratio."""
    from PIL import Image

    out = []
    for im in (real_photos() * 255).round().to(torch.uint8):
        pil = Image.fromarray(im.permute(1, 2, 0).numpy()).resize((width, height), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))
    return torch.stack(out)


def write_tiny_weights(directory: str | Path, *, seed: int = 3) -> Path:
    """Write tiny random weights, in the official file layouts, for the scorers ``clipscore``
    and ``aesthetic`` into ``directory/<resource>/`` (use it as ``$AM_WEIGHTS``): smoke runs
    and tests of the text-to-image workflow, where no real weights can be downloaded."""
    from am.vision.clip import AestheticMLP

    directory = Path(directory)
    tiny_clip_dir(directory / "clip-vit-large-patch14", seed=seed)
    (directory / "aesthetic").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(
        AestheticMLP(16).state_dict(), directory / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    )
    return directory
