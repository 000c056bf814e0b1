"""The multi-GPU trainer presets parse through the CLI and give the strategy, precision and SyncBN they promise.
(Instantiated on the CPU with one device: the launch itself needs GPUs; the equivalence of the losses across ranks
is tested on gloo in the loss tests.)"""

from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from tests.test_cli import DIGITS
from zoo.cli import ZooCLI

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "trainer"


@pytest.mark.parametrize(
    "preset,strategy,precision",
    [
        ("ddp", DDPStrategy, "32-true"),
        ("ddp_bf16", DDPStrategy, "bf16-mixed"),
        ("multinode", DDPStrategy, "bf16-mixed"),
    ],
)
def test_preset(preset, strategy, precision, tmp_path):
    cli = ZooCLI(
        args=["--config", DIGITS, "--config", str(PRESETS / f"{preset}.yaml"), "--trainer.accelerator", "cpu",
              "--trainer.devices", "1", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"],
        run=False,
    )
    trainer = cli.trainer
    assert isinstance(trainer.strategy, strategy)
    assert trainer.precision == precision
    assert cli.config["trainer"]["sync_batchnorm"] is True
    if preset == "multinode":
        assert trainer.num_nodes == 2


def test_fsdp_preset_builds_its_strategy():
    # Lightning refuses FSDP without a GPU, so the preset's strategy is built directly
    import yaml

    trainer = yaml.safe_load((PRESETS / "fsdp_bf16.yaml").read_text())["trainer"]
    assert trainer["precision"] == "bf16-mixed" and trainer["sync_batchnorm"] is True
    strategy = trainer["strategy"]
    assert strategy["class_path"] == "lightning.pytorch.strategies.FSDPStrategy"
    built = FSDPStrategy(**strategy["init_args"])
    assert built.sharding_strategy.name == "FULL_SHARD" and built._state_dict_type == "full"
