"""One-line errors for the ``zoo`` command: the user-error classes, the wrapper every command runs under, and one
line out of jsonargparse's nested error reports.

This module imports nothing heavy: ``zoo.cli`` and every module it dispatches to import their error classes from
here, so one class is raised and caught whichever module runs first.

For a subclass-typed key (``model:``/``data:``) jsonargparse explains why the value matched none of the Union's
members, e.g. for ``--model.init_args.lr abc``::

    Parser key "model":
      Does not validate against any of the Union subtypes
      Subtypes: [<class 'zoo.methods.base.SSLMethod'>, <class 'NoneType'>]
      Errors:
        - Problem with given class_path 'zoo.methods.simclr.SimCLR':
            Parser key "lr":
              Expected a <class 'float'>. Got value: abc
        - Expected a <class 'NoneType'>
      Given value type: ...

:func:`summarize_parser_error` keeps the full key and the innermost reason:
``model.init_args.lr: expected a float, got value: abc (zoo.methods.simclr.SimCLR)``.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class CLIError(Exception):
    """A user error (config, data, file) reported as one line by :func:`run_command`."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse for zoo's own commands: a usage error (missing argument, bad choice, unknown option) becomes one
    :class:`CLIError` line, ``"<what is wrong>; usage: <usage>"``, instead of argparse's usage block and exit."""

    def __init__(self, *args: Any, usage_hint: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_hint = usage_hint

    def error(self, message: str) -> NoReturn:
        usage = self.usage_hint or " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise CLIError(f"{message}; usage: {usage}")


class CLIRuntimeError(CLIError):
    """The run started and could not go on for a reason outside zoo (disk full, no GPU at run time): exit status 1."""


#: OSError numbers that are the user's environment, not a bug: reported as one line naming the path
_ENVIRONMENT_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
    errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG,
}


def describe_os_error(e: OSError) -> str:
    """``"cannot write PATH: Permission denied"``-style text for an OSError (its own text when it has no errno)."""
    if e.errno is None or not e.strerror:
        return str(e.args[0] if e.args else e)
    path = e.filename if e.filename is not None else ""
    text = f"{path}: {e.strerror}" if path else e.strerror
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        text += "; free space or write elsewhere"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and path:
        text += "; choose a folder you can write to"
    return text


# Lightning's messages when a config asks for a GPU that the machine does not have
_NO_GPU = ("No supported gpu backend found", "can not run on your system", "no GPUs available", "CUDA is not available")
_NO_GPU_HINT = (
    "this machine has no usable GPU: the GPU presets (configs/trainer/gpu_bf16.yaml, ddp*.yaml, fsdp_bf16.yaml, "
    "multinode.yaml) need one; on CPU use configs/trainer/cpu.yaml or --trainer.accelerator cpu"
)


def _module_class(module: str, name: str) -> type | None:
    # only a module that is already imported can have raised its exception: look it up without importing it
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None)
    return cls if isinstance(cls, type) else None


def user_error(e: BaseException, tool: bool) -> tuple[str, int] | None:
    """``(one-line message, exit status)`` when ``e`` is a user or environment error, ``None`` for a bug.

    ``tool``: the command is one of zoo's own (export, push, …), whose ``ValueError``/``KeyError`` are all input
    checks; in a Lightning run those can come from deep inside training and keep their traceback."""
    text = str(e.args[0]) if e.args else str(e)
    if isinstance(e, CLIRuntimeError):
        return text, 1
    if isinstance(e, CLIError):
        return text, 2
    data_error = _module_class("zoo.data.base", "DataError")
    if data_error is not None and isinstance(e, data_error):
        return text, 2
    non_finite = _module_class("zoo.methods.base", "NonFiniteLossError")
    if non_finite is not None and isinstance(e, non_finite):  # not a config error: training ran and diverged
        return text, 1
    misconfigured = _module_class("lightning.fabric.utilities.exceptions", "MisconfigurationException")
    if misconfigured is not None and isinstance(e, misconfigured):
        text = " ".join(text.split())
        if any(marker in text for marker in _NO_GPU):
            text = f"{text.rstrip('!.')}; {_NO_GPU_HINT}"
        return text, 2
    if isinstance(e, FileNotFoundError) and e.errno is None:
        return text, 2  # raised by zoo's own checks with a full sentence
    if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS:
        return describe_os_error(e), 1 if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 2
    if tool and isinstance(e, (KeyError, ValueError)):  # PretrainedLoadError is a ValueError
        return text, 2
    return None


def missing_dependency(e: BaseException) -> str | None:
    """One line when ``e`` was caused by an optional package that is not installed (e.g. a TensorBoard logger without
    tensorboard: jsonargparse reports that as the logger value being "expected a bool"); None otherwise."""
    class_path = None
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if match := re.search(r"Problem with given class_path '([^']+)'", str(cause)):
            class_path = match[1]
        if isinstance(cause, ImportError):
            reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0].rstrip(".")
            where = f"{class_path} cannot be used: " if class_path else ""
            if "tensorboard" in reason.lower():
                reason = "tensorboard is not installed: `pip install tensorboard`"
            return f"{where}{reason}"
        cause = cause.__cause__ or cause.__context__
    return None


def run_command(prog: str, command: Callable[[], int | None], tool: bool = True) -> int:
    """Run ``command``; a user or environment error becomes ``"<prog>: error: <one line>"`` on stderr and its exit
    status. Anything else is a bug and keeps its traceback; so does every error when ``ZOO_DEBUG=1``."""
    try:
        return command() or 0
    except Exception as e:
        reported = None if os.environ.get("ZOO_DEBUG") == "1" else user_error(e, tool)
        if reported is None:
            raise
        message, status = reported
        if _global_rank() == 0:  # every rank of a multi-process run meets the same error: say it once
            print(f"{prog}: error: {message}", file=sys.stderr)
        return status


def _global_rank() -> int:
    """This process's rank in a multi-process run (0 alone); read without importing Lightning when it is not loaded."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0

# lines that describe the Union machinery rather than the user's mistake
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Expected a <class 'NoneType'>",
    "Expected a path but",  # the class_path string was also tried as a config file path
)
_IMPORT_FAILURE = ("has no attribute", "No module named", "Expected a dot import path string", "not a subclass of", "does not correspond to a subclass")


def _clean(text: str) -> str:
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)  # <class 'float'> -> float
    text = re.sub(r"\ba (?=[aeiou])", "an ", text).replace(". Got value:", ", got")
    return text[0].lower() + text[1:] if text[:1].isupper() and not text[:2].isupper() else text


def summarize_parser_error(message: str) -> str:
    """``"<full.key>: <reason>"`` on one line; the message's lines joined by "; " when it has no known shape."""
    keys: list[str] = []
    class_path: str | None = None
    details: list[str] = []
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line:
            continue
        # an error raised by a class's __init__ comes back with the value that was being instantiated
        if match := re.match(r"Given value: Namespace\(class_path='([^']+)'", line):
            class_path = match[1]
        if match := re.fullmatch(r'Parser key "([^"]+)":\s*(.*)', line):
            keys.append(match[1])
            if match[2]:
                details.append(match[2])
        elif match := re.fullmatch(r"Problem with given class_path '([^']+)':", line):
            class_path = match[1]
        elif not line.startswith(_NOISE):
            details.append(line)
    if not details or not (keys or class_path):
        return "; ".join(" ".join(line.split()) for line in message.splitlines() if line.strip())
    reason = _clean(details[-1])
    if not keys:  # raised while instantiating: the class's own message
        return f"{reason} ({class_path})" if class_path else reason
    if class_path is None or len(keys) == 1:
        if any(marker in reason or marker.lower() in reason for marker in _IMPORT_FAILURE):
            given = f" {class_path!r}" if class_path else ""
            hint = "; `zoo list` shows the registered methods and their class paths" if keys[0] == "model" else ""
            return f"{keys[0]}: cannot use class_path{given}: {reason}{hint}"
        suffix = f" ({class_path})" if class_path else ""
        return f"{keys[0]}{'.init_args' if class_path else ''}: {reason}{suffix}"
    return f"{keys[0]}.init_args.{'.'.join(keys[1:])}: {reason} ({class_path})"
