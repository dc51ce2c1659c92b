"""A plain ``pip install .``, no extras, into a fresh virtual environment: the README's library
example runs there as printed and lands on the noise floor, and none of the extras' stacks was
installed. Slow tier (tests/conftest.py): an install and a two-minute training run.

PyTorch is not installed again: the fresh environment sees this interpreter's torch and the
distributions torch requires through a ``.pth`` file (a folder of links to them and nothing
else), so pip counts torch as installed and resolves only what this project declares, from the
same index a user's pip would use. Why: torch is 1-6 GB, and what is under test is this
project's own list, not PyTorch's wheel."""

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# what the extras install and the library must do without
EXTRAS_ONLY = ["scipy", "pandas", "matplotlib", "seaborn", "tabulate", "sklearn", "diffusers"]


def requirement_closure(name: str) -> list[importlib.metadata.Distribution]:
    """``name``'s distribution and every installed one it requires, recursively: a requirement
    under an ``extra == ...`` marker only where that extra was asked for (``cuda-toolkit[cublas]``),
    other markers not evaluated (a link to a distribution torch does not need here is harmless)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(name, set())]
    while todo:
        requested, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", requested).lower()
        try:
            dist = found.get(key) or importlib.metadata.distribution(key)
        except importlib.metadata.PackageNotFoundError:
            continue
        first = key not in found
        found[key] = dist
        for r in dist.requires or []:
            spec, _, marker = r.partition(";")
            extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker)
            if (extra is None and first) or (extra is not None and extra.group(1) in extras):
                req = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", spec)
                todo.append((req.group(1), {e.strip() for e in (req.group(2) or "").split(",")}))
    return list(found.values())


def link_torch(venv: Path, folder: Path) -> None:
    """Make this interpreter's torch (and what it requires) importable in ``venv``."""
    folder.mkdir()
    for dist in requirement_closure("torch"):
        for top in {f.parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts outside site-packages; .pth files act only in site dirs
            if not (folder / top).exists():
                (folder / top).symlink_to(Path(dist.locate_file(top)).resolve())
    site = run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
    )
    (Path(site.stdout.strip()) / "reused_torch.pth").write_text(f"{folder}\n")


def run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_plain_install_runs_the_readme_example(tmp_path):
    source = tmp_path / "source"  # the working tree's package, copied: the build writes there
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for package in ("am", "amcli", "baselines"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    link_torch(venv, tmp_path / "torch_site")
    run(python, "-m", "pip", "install", "--quiet", source, timeout=600)

    present = run(
        python,
        "-c",
        f"import importlib.util as u; print([m for m in {EXTRAS_ONLY} if u.find_spec(m)])",
    )
    assert present.stdout.strip() == "[]"
    example = re.findall(r"```python\n(.*?)```", README, re.S)[0]  # the README's, as printed
    (tmp_path / "example.py").write_text(example)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    out = run(python, tmp_path / "example.py", cwd=tmp_path, env=env, timeout=1200)
    printed = re.search(
        r"\d+ s; sliced_w1 to the exact tilt [\d.]+ \(noise floor [\d.]+, ([\d.]+)x; base model [\d.]+\)",
        out.stdout,
    )
    assert printed, out.stdout
    # the README's example samples without a seed: its ratio varies from run to run (0.97x to
    # 1.53x measured); the accuracy itself is checked seeded in tests/test_readme.py, so here
    # only that the installed library fine-tuned (the base is about 15 floors away)
    assert float(printed.group(1)) < 3.0
