"""``python -m amcli.t2i rehearse protocol``: the paper's text-to-image protocol end to end on
models written by ``rehearse write``, through the workflow's own rules, timed stage by stage.

    python -m amcli.t2i rehearse protocol --out /tmp/rehearsal --families sd15 sd35m \\
        --size 256 --steps 4 --iterations 2                           # CPU, reduced sizes
    python -m amcli.t2i rehearse protocol --out /tmp/rehearsal --size sd15=512 sd35m=1024 \\
        --steps 40 --iterations 2                                     # one GPU, the paper's sizes
    python -m amcli.t2i rehearse protocol --out /tmp/r --scale tiny --size 16   # seconds (tests)

Per family it writes the pipeline and every scorer (``rehearse write``, skipped when
``OUT/models/rehearsal.json`` lists them at this scale), then a run config
(``OUT/<family>/run.yaml``: ``config/t2i_gpu.yaml``'s run config, ``config/paper.yaml``, with
the written model, the size, LoRA rank 4, batch 1 and ``--iterations``; the eval prompts are two
demonstration prompts, 2 images each, the fewest that DreamSim's diversity takes) and a workflow
config (``OUT/<family>/workflow.yaml``: the GPU config's Adjoint Matching section with
``--steps``, the loss on the paper's share of them, and its ``image_metrics``). It then runs
Snakemake on that workflow config, one stage per call (fine-tune, sample the fine-tuned model,
which loads its LoRA with ``load_lora_weights``, sample the base, score both folders, the
table), each timed with its peak resident memory (``ru_maxrss`` of the finished process tree, the
number ``/usr/bin/time -v`` prints as "Maximum resident set size"). The table goes to stdout and
``OUT/protocol.md``; every command is printed before it runs, so any stage can be rerun by hand.
A second run finds the outputs up to date (Snakemake) and times only its checks: delete
``OUT/<family>/runs`` and ``OUT/<family>/results`` to measure again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

__all__ = ["add_arguments", "protocol", "configs"]

ROOT = Path(__file__).resolve().parents[2]
GPU_CONFIG = ROOT / "config" / "t2i_gpu.yaml"
EVAL_PROMPTS = [
    "a green parrot eating a slice of mango",
    "a bridge made of ice over a frozen river",
]
METHOD = "adjoint_matching"


def add_arguments(p) -> None:
    from amcli.rehearse.configs import SCALES

    p.add_argument("--out", required=True, help="folder: models/, then one folder per family")
    p.add_argument("--families", nargs="+", choices=["sd15", "sd35m"], default=["sd15", "sd35m"])
    p.add_argument("--scale", choices=SCALES, default="full")
    p.add_argument(
        "--size",
        nargs="+",
        default=["256"],
        help="image side in pixels, for all (256) or per family (sd15=512 sd35m=1024)",
    )
    p.add_argument("--steps", type=int, default=4, help="rollout and sampling steps")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument(
        "--no-checkpointing",
        action="store_true",
        help="model.gradient_checkpointing: false (the GPU config's is true)",
    )
    p.add_argument("--cores", type=int, default=2, help="snakemake --cores")


def _sizes(values: list[str], families: list[str]) -> dict[str, int]:
    sizes = {}
    for v in values:
        family, _, px = v.rpartition("=")
        for f in [family] if family else families:
            sizes[f] = int(px)
    missing = [f for f in families if f not in sizes]
    if missing:
        raise SystemExit(f"--size: no size for {', '.join(missing)}")
    return sizes


def configs(out: Path, models: Path, family: str, *, size: int, steps: int, iterations: int,
            checkpointing: bool = True, scale: str = "full") -> tuple[dict, dict]:  # fmt: skip
    """(run config, workflow config) of ``family``'s rehearsal in ``out``: the shipped GPU
    workflow config and its run config, reduced as the module's docstring says. At ``scale``
    "tiny", the scorers whose loaders need the tiny architectures passed in (ImageReward, HPS,
    DreamSim: :func:`amcli.rehearse.scorers.loader_overrides`), which no command line takes, are
    left out: the reward is ClipScore, the metrics the others and the aesthetic score."""
    from amcli.rehearse.pipelines import FAMILIES
    from amcli.rehearse.scorers import loader_overrides

    gpu = yaml.safe_load(GPU_CONFIG.read_text())
    needs_code = loader_overrides(scale)
    metrics = [m for m in gpu["image_metrics"] if m not in needs_code]
    if needs_code:
        metrics.append("aesthetic")
    run_file = ROOT / gpu["t2i"]["config"]
    run = yaml.safe_load(run_file.read_text())
    run["model"].update(path=str(models / family), height=size, width=size,
                        gradient_checkpointing=checkpointing)  # fmt: skip
    # the half-size files written beside the main ones (SD 1.5's fp16), as a user loads them
    run["model"]["variant"] = FAMILIES[family].variant
    run["lora"] = {"rank": 4, "alpha": 4.0}
    if set(run["reward"]["terms"]) & set(needs_code):
        run["reward"]["terms"] = {"clipscore": 1.0}
    run["prompts"] = {"train": str(ROOT / "data" / "prompts" / "demo_train.txt"),
                      "eval": str(out / "eval_prompts.txt")}  # fmt: skip
    run["train"].update(iterations=iterations, batch_size=1, checkpoint_every=iterations)
    run["sample"].update(per_prompt=2, num_steps=steps, batch_size=2)
    method = dict(gpu["t2i"]["methods"][METHOD], num_steps=steps)
    share = max(1, round(steps * method["steps"]["num_last"] / 40))  # the paper's 10 + 10 of 40
    method["steps"] = {**method["steps"], "num_random": share, "num_last": share}
    run["method"] = {"name": METHOD, **method}  # the workflow's, so that run.yaml runs as it is
    cuda = _cuda()
    workflow = {
        "runs_dir": "runs", "results_dir": "results",  # in snakemake's --directory, out
        "t2i": {"config": str(out / "run.yaml"), "gpus": int(cuda), "methods": {METHOD: method}},
        "image_metrics": metrics,
    }  # fmt: skip
    return run, workflow


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _measured(cmd: list[str], log: Path, env: dict) -> tuple[float, float, int]:
    """Run ``cmd`` (output to ``log``): (seconds, peak resident GiB of its process tree, status)."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 2**20, proc.returncode


def _written(models: Path, families: list[str], scale: str) -> tuple[list[str], bool]:
    """The families still to write, and whether the scorers are."""
    manifest = models / "rehearsal.json"
    record = json.loads(manifest.read_text()) if manifest.is_file() else {"pipelines": {}}
    todo = [f for f in families if record["pipelines"].get(f, {}).get("scale") != scale]
    scorers = record.get("scorers")
    return todo, scorers is None or scorers.get("scale", scale) != scale


def protocol(args) -> int:
    """Run the stages (``args`` from :func:`add_arguments`); 0, or the failing stage's status."""
    out = Path(args.out).resolve()
    models = out / "models"
    sizes = _sizes(args.size, args.families)
    env = {**os.environ, "AM_WEIGHTS": str(models / "scorers"), "PYTHONUNBUFFERED": "1"}
    py, rows = sys.executable, []
    (out / "logs").mkdir(parents=True, exist_ok=True)

    def stage(family: str, name: str, cmd: list[str]) -> bool:
        seconds, gib, status = _measured(cmd, out / "logs" / f"{family}_{name}.log", env)
        rows.append((family, name, seconds, gib, status))
        print(f"{family} {name}: {seconds:.0f} s, peak {gib:.2f} GiB, status {status}", flush=True)
        return status == 0

    todo, scorers = _written(models, args.families, args.scale)
    write = [py, "-m", "amcli.t2i", "rehearse", "write", "--out", str(models),
             "--scale", args.scale]  # fmt: skip
    for family in todo:
        if not stage(family, "write", [*write, "--families", family]):
            return _report(out, rows)
    if scorers and not stage("scorers", "write", [*write, "--families", "--scorers"]):
        return _report(out, rows)
    for family in args.families:
        folder = out / family
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval_prompts.txt").write_text("\n".join(EVAL_PROMPTS) + "\n")
        run, workflow = configs(folder, models, family, size=sizes[family], steps=args.steps,
                                iterations=args.iterations, scale=args.scale,
                                checkpointing=not args.no_checkpointing)  # fmt: skip
        (folder / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False))
        (folder / "workflow.yaml").write_text(yaml.safe_dump(workflow, sort_keys=False))
        runs = Path("runs", "t2i")  # the targets: relative to snakemake's --directory
        snake = [py, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                 str(folder), "--cores", str(args.cores), "--configfile",
                 str(folder / "workflow.yaml"), "--rerun-incomplete", "--printshellcmds"]  # fmt: skip
        targets = {
            "finetune": [runs / METHOD / "result.json"],
            "sample": [runs / METHOD / "samples" / "metadata.csv"],
            "sample_base": [runs / "base" / "samples" / "metadata.csv"],
            "score": [runs / m / "samples" / "metrics" / "metrics.csv" for m in ("base", METHOD)],
            "table": [Path("results", "t2i", "table.md")],
        }
        for name, paths in targets.items():
            if not stage(family, name, [*snake, *map(str, paths)]):
                return _report(out, rows)
        print((folder / "results" / "t2i" / "table.md").read_text(), flush=True)
    return _report(out, rows)


def _report(out: Path, rows: list) -> int:
    lines = ["| family | stage | seconds | peak resident memory (GiB) | status |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {f} | {n} | {s:.0f} | {g:.2f} | {c} |" for f, n, s, g, c in rows]
    table = "\n".join(lines) + "\n"
    (out / "protocol.md").write_text(table)
    print(table, flush=True)
    return next((c for *_, c in rows if c != 0), 0)
