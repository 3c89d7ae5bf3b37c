"""The file-name template language of the pattern layouts.

A template such as ``"RawData/Training/img/img{id}.nii.gz"`` is matched
against paths relative to a dataset root: ``{name}`` captures a field (any
characters but ``/``, or a regular expression given per field), ``*``, ``?``
and ``**/`` are glob wildcards; symbolic links to folders are followed
(:func:`walk`). :func:`natural_key` sorts ``img2`` before ``img10``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
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
        folders) are skipped. Symbolic links to folders are followed (see
        :func:`walk`).
        """
        found = []
        for path in walk(root, self.glob):
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


def walk(root: Path, glob: str) -> Iterator[Path]:
    """Paths under ``root`` matching ``glob`` (``*``, ``?``, ``**`` segments), links followed.

    Unlike :meth:`pathlib.Path.glob`, ``**`` descends into symbolic links to
    folders too (a root of links to the real data is common); a link back to
    a folder above it is not followed again, so a loop ends. Hidden entries
    and ``__MACOSX`` folders are skipped. Paths keep the links' names.
    """
    yield from _walk(root, [s for s in glob.split("/") if s], {_identity(root)})


def _walk(folder: Path, segments: list[str], above: set[tuple[int, int]]) -> Iterator[Path]:
    if not segments:
        return
    head, rest = segments[0], segments[1:]
    if head == "**":
        yield from _walk(folder, rest, above)
        for child in _folders(folder, "*", above):
            yield from _walk(child, segments, above | {_identity(child)})
        return
    if not rest:
        if not _WILD.search(head):
            path = folder / head
            if path.exists() and not _hidden(head):
                yield path
            return
        for entry in _entries(folder):
            if fnmatch.fnmatchcase(entry.name, head):
                yield folder / entry.name
        return
    for child in _folders(folder, head, above):
        yield from _walk(child, rest, above | {_identity(child)})


_WILD = re.compile(r"[*?\[]")


def _folders(folder: Path, pattern: str, above: set[tuple[int, int]]) -> Iterator[Path]:
    """Sub-folders (links followed) matching ``pattern``, except those that loop back."""
    if not _WILD.search(pattern):
        names = [pattern] if not _hidden(pattern) else []
    else:
        names = [e.name for e in _entries(folder) if fnmatch.fnmatchcase(e.name, pattern)]
    for name in names:
        child = folder / name
        if child.is_dir() and _identity(child) not in above:
            yield child


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not _hidden(e.name)), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def one_level_off(root: Path, count: Callable[[Path], int],
                  most: int = 50) -> tuple[Path, int] | None:
    """The folder one level above or below ``root`` where ``count`` finds most cases.

    For a root that matches nothing: ``count(folder)`` is the number of cases
    the card's patterns find under ``folder``; the parent and up to ``most``
    sub-folders are tried. None when none of them has a case.
    """
    parent = root.absolute().parent
    # never the file system's root or the home folder: a '**' pattern would walk it all
    candidates = [] if parent.parent == parent or parent == Path.home() else [parent]
    candidates += [root / e.name for e in _entries(root) if e.is_dir()][:most]
    best = None
    for folder in candidates:
        found = count(folder)
        if found and (best is None or found > best[1]):
            best = (folder, found)
    return best


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


__all__ = ["Pattern", "excluded", "natural_key", "one_level_off", "walk"]
