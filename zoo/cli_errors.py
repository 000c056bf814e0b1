"""One line out of jsonargparse's nested error reports.

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

import re

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
