"""The README's library example runs as written (with fewer iterations)."""

import re
from pathlib import Path


def test_readme_example_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Using the library\n\n```python\n(.*?)```", text, re.S).group(1)
    assert "iterations=1000" in code
    scope: dict = {}
    exec(code.replace("iterations=1000", "iterations=3").replace("10_000", "100"), scope)  # noqa: S102
    assert scope["x"].shape == (100, 1)
