"""`zoo` start-up and help: no Lightning import for `zoo`, `--help`, `zoo list` and argument errors; every command
listed with one line; a short `zoo fit --help`; the static method table matches the registered classes."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

from zoo.cli import DATAMODULES, LIGHTNING_COMMANDS, TOOLS, main
from zoo.registry import BUILTIN_METHODS, first_sentence, get_method

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_start_up_paths_import_neither_torch_nor_lightning():
    script = (
        "import sys, contextlib, io\n"
        "import zoo\n"
        "from zoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = [main(a) for a in ([], ['--help'], ['list'], ['fit', '--help'], ['nope'], ['fit', '-h'])]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'pytorch_lightning'))\n"
        "print(codes, heavy[:5])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2, 0, 0, 0, 2, 0] []", done.stdout


def test_the_zoo_command_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(rows) == set(LIGHTNING_COMMANDS) | set(TOOLS)
    assert all(len(line.split()) > 3 for line in rows.values())  # a summary, not only the name
    assert main([]) == 2  # no command: the same list, as a usage error
    assert capsys.readouterr().err.splitlines()[0].startswith("usage: zoo COMMAND")


def test_an_unknown_command_is_one_line_naming_the_commands(capsys):
    assert main(["fitt", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo: error: unknown command 'fitt'; commands: fit, validate")


def test_fit_help_is_short_and_names_methods_recipes_and_print_config(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 60
    for needle in ("zoo list", "--print_config", "--help-all", "zoo.methods.simclr.SimCLR", "digits, fashion_mnist", "cpu, cpu_bf16, ddp"):
        assert needle in out, needle
    assert all(path in out for path in DATAMODULES)


def test_help_all_hands_lightning_its_own_help(monkeypatch):
    # Lightning's full help takes seconds to build; what matters here is that zoo hands it the request
    seen = []
    monkeypatch.setattr("zoo.cli._run_lightning", lambda args: seen.append(args) or 0)
    assert main(["fit", "--config", "x.yaml", "--help-all"]) == 0
    assert seen == [["fit", "--config", "x.yaml", "--help"]]


def test_the_static_method_table_matches_the_registered_classes():
    import zoo.methods  # noqa: F401  (registers every built-in method)
    from zoo.registry import _METHODS

    assert set(BUILTIN_METHODS) == set(_METHODS)
    for name, info in BUILTIN_METHODS.items():
        cls = get_method(name)
        assert (cls.__module__, cls.__qualname__) == (info.module, info.qualname), name
        assert info.summary == first_sentence(cls.__doc__), f"{name}: update BUILTIN_METHODS' summary to the docstring's"


def test_the_datamodule_table_matches_the_code():
    from zoo.data.base import ZooDataModule

    found = set()
    for module in ("zoo.data.images", "zoo.data.tabular", "zoo.data.skeleton", "zoo.data.audio_text"):
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if issubclass(cls, ZooDataModule) and cls is not ZooDataModule and cls.__module__ == module:
                found.add(f"{module}.{cls.__qualname__}")
    assert found == set(DATAMODULES)


def test_first_sentence_keeps_citations_whole():
    assert first_sentence("BYOL (Grill et al. 2020, arXiv 2006.07733): regresses\n   a target; no negatives.") == (
        "BYOL (Grill et al. 2020, arXiv 2006.07733): regresses a target; no negatives."
    )
    assert first_sentence("SLAP (Guinot et al. 2025): audio–text BYOL. Each modality has\nan arm.\n\nMore.") == (
        "SLAP (Guinot et al. 2025): audio–text BYOL."
    )
    assert first_sentence("A (Yan et al., ICCV 2023): e.g. This stays. Then this goes.") == "A (Yan et al., ICCV 2023): e.g. This stays."


def test_list_prints_whole_first_sentences(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(BUILTIN_METHODS)
    slap = next(line for line in lines if line.startswith("slap "))
    assert slap.endswith("audio–text BYOL without negatives.") and "zoo.methods.slap.SLAP" in slap
