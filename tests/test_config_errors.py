"""Bad `zoo fit` configs fail before training with one line naming the key (rc 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.test_cli import DIGITS, REPO
from zoo.cli import main
from zoo.cli.errors import summarize_parser_error

QUIET = ["--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.accelerator", "cpu"]

CASES = {
    "unknown method module": (
        ["--model", "zoo.methods.nothing.NoSuchMethod"],
        "model: cannot use class_path 'zoo.methods.nothing.NoSuchMethod': module 'zoo.methods' has no attribute 'nothing'; `zoo list`",
    ),
    "method name instead of a class path": (["--model", "SimCLRR"], "model: cannot use class_path: expected a dot import path string: SimCLRR"),
    "class that is not a method": (["--model", "torch.nn.Linear"], "model: cannot use class_path: import path does not correspond to a subclass of SSLMethod"),
    "wrong type on the command line": (["--model.init_args.lr", "abc"], "model.init_args.lr: expected a float, got abc (zoo.methods.simclr.SimCLR)"),
    "unknown init arg": (["--model.init_args.nope", "1"], "model.init_args: option 'nope' is not accepted (zoo.methods.simclr.SimCLR)"),
    "unknown encoder key": (["--model.init_args.encoder", json.dumps({"nme": "resnet18"})], "model.init_args.encoder: unexpected keys: {'nme'}"),
    "value a class rejects": (["--model.init_args.lr", "-1"], "ValueError: invalid optimisation settings: lr=-1.0"),
    "unknown timm model": (["--model.init_args.encoder", json.dumps({"name": "resnet999"})], "ValueError: unknown timm model 'resnet999'"),
    "wrong data type": (["--data.init_args.batch_size", "big"], "data.init_args.batch_size: expected an int, got big (zoo.data.images.ImageDataModule)"),
    "unknown datamodule": (["--data", "zoo.data.NoData"], "data: cannot use class_path 'zoo.data.NoData': module 'zoo.data' has no attribute 'NoData'"),
    "wrong trainer type": (["--trainer.max_epochs", "ten"], "trainer.max_epochs: expected an int"),
    "unknown trainer key": (["--trainer.epochs", "3"], "unrecognized arguments: --trainer.epochs 3"),
    "missing data path": (["--data.init_args.dataset", "idx", "--data.init_args.data_dir", "/nowhere/mnist"], "IDX dataset directory /nowhere/mnist does not exist"),
    "missing config file": (["--config", "/nowhere/recipe.yaml"], "config: file does not exist: '/nowhere/recipe.yaml'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_is_one_line_naming_the_key(name, tmp_path, capsys):
    extra, expected = CASES[name]
    assert main(["fit", "--config", DIGITS, *QUIET, "--trainer.default_root_dir", str(tmp_path), *extra]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("zoo fit: error: ") and expected in err, err
    assert "Epoch" not in captured.out and not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_yaml_with_a_wrong_type_names_the_key(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  init_args:\n    temperature: warm\n")
    assert main(["fit", "--config", DIGITS, "--config", str(recipe), *QUIET]) == 2
    assert capsys.readouterr().err.strip() == "zoo fit: error: model.init_args.temperature: expected a float, got warm (zoo.methods.simclr.SimCLR)"


def test_missing_subcommand_lists_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: zoo COMMAND") and "\n  fit " in err and "\n  export " in err


def test_the_real_process_prints_exactly_one_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", DIGITS, "--model.init_args.lr", "abc"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "zoo fit: error: model.init_args.lr: expected a float, got abc (zoo.methods.simclr.SimCLR)\n"


def test_summary_of_an_unknown_report_keeps_every_line():
    assert summarize_parser_error("first problem\n  second problem") == "first problem; second problem"
