"""Score a folder of generated images: per-image scores and a table of means over prompts.

The folder follows the Hugging Face ``imagefolder`` layout: image files plus ``metadata.csv``
(or ``metadata.jsonl``) with a ``file_name`` column (relative paths) and a ``prompt`` column.
Several images per prompt are expected (the paper: 10 per prompt), since every statistic is
over prompts: each metric is averaged per prompt first, then the table gives the mean over
prompts and its standard error (standard deviation over prompts, ddof = 1, over
``sqrt(prompts)``); DreamSim diversity is the per-prompt mean pairwise ``1 - cos`` of its
images, averaged the same way (:func:`am.metrics.images.grouped_diversity`) and reported x 100,
the scale of the paper's tables (:data:`am.vision.dreamsim.TABLE_SCALE`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from am.extras import require
from am.vision.base import ImageScorer, ScorerInfo

pd = require("pandas", extra="images", purpose="am.vision.evaluate (its score tables)")

__all__ = ["ImageFolder", "read_image_folder", "ScoreTable", "score_folder", "summary_markdown"]


@dataclass(frozen=True)
class ImageFolder:
    """``files`` (absolute paths) and their ``prompts``, in metadata order."""

    files: list[Path]
    prompts: list[str]


def read_image_folder(folder: str | Path) -> ImageFolder:
    """Read ``folder/metadata.csv`` or ``metadata.jsonl``; ValueError naming what is wrong."""
    folder = Path(folder)
    if (folder / "metadata.csv").is_file():
        meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    elif (folder / "metadata.jsonl").is_file():
        meta = pd.read_json(folder / "metadata.jsonl", lines=True, dtype=False)
    else:
        raise ValueError(f"{folder} has no metadata.csv or metadata.jsonl (file_name, prompt)")
    missing_cols = {"file_name", "prompt"} - set(meta.columns)
    if missing_cols:
        raise ValueError(f"{folder} metadata lacks column(s) {sorted(missing_cols)}")
    files = [folder / f for f in meta["file_name"]]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"{len(absent)} image(s) listed in the metadata are missing: {absent[:5]}")
    if len(files) == 0:
        raise ValueError(f"{folder} metadata lists no images")
    return ImageFolder(files, [str(p) for p in meta["prompt"]])


def load_image(path: Path) -> Tensor:
    """An image file as ``[3, H, W]`` float in [0, 1] (RGB)."""
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


@dataclass(frozen=True)
class ScoreTable:
    """``per_image``: one row per image (file_name, prompt, one column per metric);
    ``summary``: one row per metric (metric, mean, stderr, prompts, images, version, scale)."""

    per_image: pd.DataFrame
    summary: pd.DataFrame


def _batches(folder: ImageFolder, batch_size: int):
    """Index batches of images with one shape (generations usually share it)."""
    images = [load_image(f) for f in folder.files]
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(tuple(im.shape), []).append(i)
    for indices in by_shape.values():
        for k in range(0, len(indices), batch_size):
            chunk = indices[k : k + batch_size]
            yield chunk, torch.stack([images[i] for i in chunk])


def _over_prompts(values: pd.Series, prompts: pd.Series) -> tuple[float, float, int]:
    per_prompt = values.groupby(prompts, sort=True).mean()
    n = len(per_prompt)
    stderr = float(per_prompt.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(per_prompt.mean()), stderr, n


@torch.no_grad()
def score_folder(
    folder: str | Path | ImageFolder,
    scorers: Mapping[str, ImageScorer],
    dreamsim=None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> ScoreTable:
    """Score every image of ``folder`` with each scorer, and DreamSim diversity over prompts
    when ``dreamsim`` (a :class:`am.vision.dreamsim.DreamSimEmbedder`) is given."""
    data = folder if isinstance(folder, ImageFolder) else read_image_folder(folder)
    n = len(data.files)
    table = pd.DataFrame({"file_name": [f.name for f in data.files], "prompt": data.prompts})
    columns = {name: np.full(n, np.nan) for name in scorers}
    embeddings: list[Tensor | None] = [None] * n
    for chunk, images in _batches(data, batch_size):
        images = images.to(device)
        prompts = [data.prompts[i] for i in chunk]
        for name, scorer in scorers.items():
            columns[name][chunk] = scorer(images, prompts).double().cpu().numpy()
        if dreamsim is not None:
            for i, e in zip(chunk, dreamsim.embed(images).double().cpu(), strict=True):
                embeddings[i] = e
    rows = []
    for name, scorer in scorers.items():
        table[name] = columns[name]
        mean, stderr, prompts = _over_prompts(table[name], table["prompt"])
        rows.append(_row(name, scorer.info, scorer.table_mean(mean), stderr, prompts, n))
    if dreamsim is not None:
        from am.metrics.images import grouped_diversity

        codes = pd.factorize(table["prompt"], sort=True)[0]
        from am.vision.dreamsim import TABLE_SCALE

        div = grouped_diversity(torch.stack(embeddings), torch.as_tensor(codes), distance="cosine")
        mean, stderr = TABLE_SCALE * div.mean, TABLE_SCALE * div.stderr  # the paper's scale
        rows.append(_row("dreamsim_diversity", dreamsim.info, mean, stderr, len(div.per_group), n))
    return ScoreTable(table, pd.DataFrame(rows))


def _row(metric: str, info: ScorerInfo, mean: float, stderr: float, prompts: int, images: int):
    return dict(
        metric=metric,
        mean=mean,
        stderr=stderr,
        prompts=prompts,
        images=images,
        version=info.version,
        scale=info.scale,
    )


def summary_markdown(summary: pd.DataFrame, title: str = "Image metrics") -> str:
    """The summary as Markdown: a header naming every metric's version and scale, then
    ``metric | mean | stderr | prompts | images``."""
    lines = [f"# {title}", "", "Means over prompts, standard errors over prompts.", ""]
    lines += [f"- **{r.metric}**: {r.version}; scale: {r.scale}" for r in summary.itertuples()]
    body = summary[["metric", "mean", "stderr", "prompts", "images"]]
    return "\n".join(lines) + "\n\n" + body.to_markdown(index=False, floatfmt=".4f") + "\n"
