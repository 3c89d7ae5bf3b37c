"""The file-name template language of the pattern layouts.

A template such as ``"RawData/Training/img/img{id}.nii.gz"`` is matched
against paths relative to a dataset root: ``{name}`` captures a field (any
characters but ``/``, or a regular expression given per field), ``*``, ``?``
and ``**/`` are glob wildcards. :func:`natural_key` sorts ``img2`` before
``img10``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

_TOKEN = re.compile(r"\*\*/|\*\*|\*|\?|\{(\w+)\}")


class Pattern:
    """A file-name template such as ``"RawData/Training/img/img{id}.nii.gz"``.

    ``{name}`` captures a field (any characters but ``/``, or the regular
    expression given in ``fields``); ``*``, ``?`` and ``**/`` are glob
    wildcards. Paths are matched relative to the dataset root.
    """

    def __init__(self, template: str, fields: Mapping[str, str] | None = None) -> None:
        self.template = template
        self.fields: list[str] = []
        regex, glob, pos = [], [], 0
        for match in _TOKEN.finditer(template):
            literal = template[pos:match.start()]
            regex.append(re.escape(literal))
            glob.append(literal)
            token = match.group(0)
            name = match.group(1)
            if name:
                if name in self.fields:
                    regex.append(f"(?P={name})")
                else:
                    self.fields.append(name)
                    expr = (fields or {}).get(name, r"[^/]+?")
                    regex.append(f"(?P<{name}>{expr})")
                glob.append("*")
            elif token == "**/":
                regex.append(r"(?:[^/]+/)*")
                glob.append("**/")
            elif token == "**":
                regex.append(r".*")
                glob.append("**")
            elif token == "*":
                regex.append(r"[^/]*")
                glob.append("*")
            else:
                regex.append(r"[^/]")
                glob.append("?")
            pos = match.end()
        regex.append(re.escape(template[pos:]))
        glob.append(template[pos:])
        self.regex = re.compile("".join(regex) + r"\Z")
        self.glob = "".join(glob)

    def find(self, root: Path, exclude: Sequence[str] = ()) -> list[tuple[Path, dict[str, str]]]:
        """Files under ``root`` matching the template, with their captured fields.

        Hidden files, ``__MACOSX`` folders and paths matching an ``exclude``
        pattern (shell-style over the whole relative path: ``*`` crosses
        folders) are skipped.
        """
        found = []
        for path in root.glob(self.glob):
            rel = path.relative_to(root).as_posix()
            if any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/")):
                continue
            if excluded(rel, exclude):
                continue
            match = self.regex.match(rel)
            if match:
                found.append((path, match.groupdict()))
        found.sort(key=lambda item: natural_key(item[0].relative_to(root).as_posix()))
        return found

    def format(self, **values: str) -> str:
        """The template with the given fields filled in."""
        text = self.template
        for name, value in values.items():
            text = text.replace("{" + name + "}", str(value))
        return text


def excluded(rel: str, exclude: Sequence[str]) -> bool:
    """True when the relative path ``rel`` matches an ``exclude`` pattern (``*`` crosses
    folders)."""
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude)


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


__all__ = ["Pattern", "excluded", "natural_key"]
