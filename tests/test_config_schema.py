"""amcli.schema: the workflow config's schema, its typed parts generated from the config
dataclasses, refuses a typo or a wrong type at its path (fast: jsonschema in-process; the
Snakemake dry runs that use it are in tests/workflow/test_schema.py)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _schema_errors(config: dict) -> list[str]:
    """Every error the generated schema finds in ``config``, as ``dotted.path: message``."""
    import jsonschema

    from amcli.schema import workflow_schema

    validator = jsonschema.Draft202012Validator(workflow_schema())
    return [".".join(map(str, e.absolute_path)) + ": " + e.message
            for e in validator.iter_errors(config)]  # fmt: skip


@pytest.mark.parametrize("name", ["config.yaml", "full.yaml", "smoke.yaml", "ablation.yaml"])
def test_generated_schema_accepts_the_shipped_configs(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    assert _schema_errors(config) == []


@pytest.mark.parametrize(
    "edit, path, needle",
    [
        (lambda c: c["defaults"]["train"].update(lrr=1.0), "defaults.train", "lrr"),
        (lambda c: c["defaults"]["train"].update(iterations="many"), "defaults.train.iterations",
         "many"),
        (lambda c: c["defaults"].update(modle={}), "defaults", "modle"),
        (lambda c: c["methods"].update(draft={"grad_stepz": 1}), "methods.draft", "grad_stepz"),
        (lambda c: c["methods"].update(drafty={}), "methods", "drafty"),
        (lambda c: c["digits"]["train"].update(lr=[1]), "digits.train.lr", "[1]"),
        (lambda c: c["digits"].update(method_configs={"grpo": {"group": 8}}),
         "digits.method_configs.grpo", "group"),
        (lambda c: c["digits"]["eval"].update(per_clas=2), "digits.eval", "per_clas"),
    ],
)  # fmt: skip
def test_generated_schema_names_a_typed_key(edit, path, needle):
    """The run sections, every method's fields and the digits section are typed by the schema
    generated from their dataclasses (amcli.schema), so a typo or a wrong type inside them is
    refused before any job, at its path."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    edit(config)
    errors = _schema_errors(config)
    assert any(e.startswith(path + ":") and needle in e for e in errors), errors


def test_yaml_exponent_without_dot_passes_the_schema():
    """YAML 1.1 reads 3e-4 as a string; the config layer takes it as a number, so does the
    schema (and a word is still refused)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["defaults"]["train"]["lr"] = "3e-4"
    assert _schema_errors(config) == []
    config["defaults"]["train"]["lr"] = "fast"
    assert _schema_errors(config)


def test_every_method_section_has_exactly_its_config_fields():
    """One source of truth: a field added to a method's config class is in the schema."""
    import dataclasses

    from amcli.schema import workflow_schema
    from baselines.registry import METHODS

    props = workflow_schema()["properties"]["methods"]["properties"]
    assert set(props) == set(METHODS)
    for name, cls in METHODS.items():
        fields = {f.name for f in dataclasses.fields(cls.config_class) if f.init}
        assert set(props[name]["properties"]) == fields, name
