"""``results/README.md``: every table and figure of a results folder, what it shows, the config
and the code revision that produced it.

In the workflow (rule ``results_index``) the revision is the checkout's ``HEAD`` (with
``+uncommitted`` when the code or configs differ from it). Run by hand with ``--from-git`` it
takes, for each committed file, the commit that last changed it:
``python -m workflow.scripts.results_index results --config config/config.yaml --from-git``.
"""

import argparse
import fnmatch
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# glob (relative to the results folder) -> what the file shows and how to read it
WHAT = {
    "ground_truth.*": "Theorem 1 in numbers: each sampler's distance to the exact tilted target "
    "beside the sampling-noise floor, memoryless against constant sigma (1.0x the floor = exact)",
    "comparison.*": "every method on every exact Gaussian-mixture problem and reward scale at "
    "equal budgets: distance to the exact tilt (ODE and memoryless samplers) beside the noise "
    "floor; reward, diversity and distance to the base next to the exact target's",
    "pareto.*": "mean reward against distance to the base, per method, one panel per problem; "
    "stars: the exact tilted targets (a method on its star is exact; above it, reward-hacking)",
    "figure2_*": "the paper's Figure 2 for one problem: the fine-tuned models' samples "
    "(histograms; 2-D projections above 2-D), memoryless against constant sigma, under the exact "
    "tilt's density (curve or contours), on shared axes",
    "digits/table.*": "the digits benchmark: reward, held-out classifier, diversity and "
    "realism of every method and reward scale, with the importance-sampling reference",
    "digits/pareto.*": "digits: mean reward against diversity (left) and against realism "
    "(Frechet distance to real digits, right) across reward scales, with the base and the "
    "importance-sampling reference",
    "t2i/table.*": "text-to-image: image metrics (mean ± standard error over prompts, each "
    "metric's version and scale in the header) of the base and each fine-tuned model",
    "digits/convergence.*": "digits: each statistic's distance to the importance-sampling "
    "reference (in combined standard errors) against the training budget, for the memoryless "
    "methods and constant sigma at every reward scale",
    "digits/samples.png": "digits: samples of every method (rows) at every reward scale "
    "(columns), first seed",
}
# every figure is also written as a PDF beside its PNG, for papers; the PDFs are not committed
SUFFIXES = {".md", ".csv", ".png"}


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def head_revision() -> str:
    rev = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "am", "amcli", "baselines", "workflow", "config")
    return rev + ("+uncommitted" if dirty else "")


def describe(name: str) -> str:
    for pattern, text in WHAT.items():
        if fnmatch.fnmatch(name, pattern):
            return text
    return ""


def index(folder: Path, config: str, from_git: bool) -> str:
    if from_git:  # what is committed, not what a run left beside it
        listed = [folder / p for p in _git("-C", str(folder), "ls-files").splitlines()]
    else:
        listed = list(folder.rglob("*"))
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in listed
        if p.is_file() and p.suffix in SUFFIXES and "logs" not in p.parts and p.name != "README.md"
    )
    revision = head_revision()
    lines = [
        f"# {folder.name}/",
        "",
        f"Produced by the workflow (`bash scripts/reproduce.sh`) from `{config}`; regenerated "
        "with the results. Revision: the code that produced each file. Every figure is also "
        "written as a PDF beside its PNG (not committed); `snakemake --report` gathers them all "
        "into one HTML page with captions.",
        "",
        "| file | what it shows | revision |",
        "| --- | --- | --- |",
    ]
    for name in files:
        rev = revision
        if from_git:
            rev = (
                _git("log", "-1", "--follow", "--format=%h", "--", str(folder / name))
                or "uncommitted"
            )
        lines.append(f"| [{name}]({name}) | {describe(name)} | {rev} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--from-git", action="store_true")
    args = ap.parse_args(argv)
    (args.folder / "README.md").write_text(index(args.folder, args.config, args.from_git))
    return 0


if "snakemake" in globals():
    folder = Path(snakemake.output[0]).parent  # noqa: F821
    with open(snakemake.log[0], "w") as log:  # noqa: F821
        text = index(folder, snakemake.params.config, from_git=False)  # noqa: F821
        Path(snakemake.output[0]).write_text(text)  # noqa: F821
        log.write(f"indexed {text.count('| [')} files\n")
elif __name__ == "__main__":
    sys.exit(main())
