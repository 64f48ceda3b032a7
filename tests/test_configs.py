"""Every YAML under conf/ parses and validates against the CLI (litgpt's test_config_hub pattern)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import yaml

from compclap.cli import CompClapCLI
from compclap.lit_module import CompClapModule

CONF = Path(__file__).resolve().parents[1] / "conf"
# Standalone configs of `compclap classify` (compclap.classifier.AudioClassifier), not fragments of fit.yaml.
CLASSIFIER_CONFIGS = [CONF / "experiment" / "finetune_classifier.yaml"]
FRAGMENTS = sorted(p for p in CONF.rglob("*.yaml") if p.name != "fit.yaml" and p not in CLASSIFIER_CONFIGS)


class _ParseOnly(CompClapCLI):
    """Parse and validate the config without building models (which would need local weights)."""

    def instantiate_classes(self) -> None:
        """Skip instantiation."""


@pytest.mark.parametrize("path", [CONF / "fit.yaml", *FRAGMENTS], ids=lambda p: str(p.relative_to(CONF)))
def test_every_config_parses(path):
    assert yaml.safe_load(path.read_text()), f"{path} is empty"
    configs = [CONF / "fit.yaml"] if path.name == "fit.yaml" else [CONF / "fit.yaml", path]
    cli = _ParseOnly(CompClapModule, L.LightningDataModule, subclass_mode_data=True, run=False,
                     args=[a for c in configs for a in ("--config", str(c))])
    assert cli.config.model.model.class_path == "compclap.models.CLAPDualEncoder"
    assert cli.config.model.loss.class_path.startswith("compclap.losses.")


@pytest.mark.parametrize("path", CLASSIFIER_CONFIGS, ids=lambda p: str(p.relative_to(CONF)))
def test_classifier_configs_parse(path):
    from compclap.classifier import AudioClassifier, ClassifierCLI

    class ParseOnly(ClassifierCLI):
        """Parse and validate without building the model (its pretrained weights need not exist)."""

        def instantiate_classes(self) -> None:
            """Skip instantiation."""

    cli = ParseOnly(AudioClassifier, L.LightningDataModule, subclass_mode_data=True, run=False,
                    args=["--config", str(path)])
    assert cli.config.model.model.class_path == "compclap.models.CLAPDualEncoder"
    assert cli.config.data.class_path == "compclap.data.labelled.LabelledDataModule"
    assert cli.config.model.head in ("linear", "mlp")


def test_a_wrong_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  learning_rate: 0.1\n")
    with pytest.raises(SystemExit):
        _ParseOnly(CompClapModule, L.LightningDataModule, subclass_mode_data=True, run=False, args=["--config", str(CONF / "fit.yaml"),
                                                                        "--config", str(bad)])
