"""Audio folder trees: which files a folder holds, and the mirrored names of their outputs.

One rule for every command that walks folders (restore, analyze, degrade, evaluate, the data
manifests), so that what one writes the next one finds:

- a file is audio when its suffix is in ``AUDIO_EXTENSIONS`` (any case);
- hidden files and folders (a name starting with ``.``) below the root are skipped;
- symbolic links are followed, to files and to folders; each real folder and file is taken
  once, and a link that leads nowhere, loops, or repeats what was already found is reported;
- a folder that cannot be read is reported, never silently left out;
- a link (or any path) that leads into a folder given as ``skip_inside`` (restore's output
  folder) is reported and not entered: outputs are never taken for inputs.

The mirrored naming (``mirror_names``) gives every input its own output path: ``a/b.flac``
becomes ``a/b.wav``; inputs that would meet in one name keep their full name
(``a.flac.wav``, ``a.mp3.wav``), decided for the whole set at once.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hireslm.audio.io import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class TreeProblem:
    """Something under a root that could be an input but is not taken, and why. ``lost``:
    no other path leads to it (a dangling link, an unreadable folder); else what it leads to
    is taken under another name (a second link to one file, a loop back to a folder)."""

    path: Path
    reason: str
    lost: bool = True


@dataclass
class AudioTree:
    """The audio files under ``root`` (relative paths, sorted) and what was left out."""

    root: Path
    files: list[Path] = field(default_factory=list)
    problems: list[TreeProblem] = field(default_factory=list)


def is_audio_name(name: str, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> bool:
    """True for a visible file name whose suffix is one of ``extensions`` (``.wav``...)."""
    return not name.startswith(".") and Path(name).suffix.lower() in extensions


def scan_audio(root: str | os.PathLike, exclude: Iterable[str | os.PathLike] = (),
               extensions: Iterable[str] = AUDIO_EXTENSIONS,
               skip_inside: Iterable[str | os.PathLike] = ()) -> AudioTree:
    """Walk ``root`` (a folder) for audio files, following links, each real file once.

    ``exclude``: folders never entered (a report folder inside the tree). ``extensions``:
    the suffixes taken (lower case, with the dot). ``skip_inside``: folders whose files are
    never taken, each link (to a file or a folder) that leads there reported as a problem
    (not lost: what is there is no input).
    """
    root = Path(root)
    extensions = frozenset(extensions)
    excluded = {Path(p).resolve() for p in exclude}
    avoided = [Path(p).resolve() for p in skip_inside]

    def leads_inside(path: Path) -> str | None:
        real = path.resolve()
        for folder in avoided:
            if real == folder or folder in real.parents:
                return (f"leads into the output folder {folder} (-> {real}): not taken, "
                        "outputs are not restored again")
        return None
    tree = AudioTree(root)
    seen_dirs: dict[Path, Path] = {}
    seen_files: dict[Path, Path] = {}

    def refuse(error: OSError) -> None:
        tree.problems.append(TreeProblem(Path(error.filename or root),
                                         f"folder cannot be read: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=refuse, followlinks=True):
        here = Path(dirpath)
        real_here = here.resolve()
        if real_here in seen_dirs:
            # Entered through a link to a folder already walked: skip its contents.
            first = seen_dirs[real_here]
            reason = "symlink loop" if _is_relative_to(here, first) \
                else f"same folder as {first} (symlink)"
            tree.problems.append(TreeProblem(here, reason, lost=False))
            dirnames[:] = []
            continue
        seen_dirs[real_here] = here
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (here / d).resolve() not in excluded)
        for name in list(dirnames):
            reason = leads_inside(here / name)
            if reason is not None:
                tree.problems.append(TreeProblem(here / name, reason, lost=False))
                dirnames.remove(name)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            problem = _link_problem(path, extensions)
            if problem is not None:
                tree.problems.append(TreeProblem(path, problem))
                continue
            if not is_audio_name(name, extensions):
                continue
            reason = leads_inside(path)
            if reason is not None:
                tree.problems.append(TreeProblem(path, reason, lost=False))
                continue
            real = path.resolve()
            first = seen_files.setdefault(real, path)
            if first != path:
                # The file under its own name is the input; a link to it is the repeat.
                if first.is_symlink() and not path.is_symlink():
                    seen_files[real], first, path = path, path, first
                tree.problems.append(TreeProblem(path, f"same file as {first}", lost=False))
    tree.files = sorted(path.relative_to(root) for path in seen_files.values())
    return tree


def _link_problem(path: Path, extensions: frozenset[str]) -> str | None:
    """Why a listed name that is no file or folder cannot be taken (None: it can, or it is
    not meant as audio)."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if not path.is_symlink():
            return f"cannot be read: {exc.strerror}"
        target = os.readlink(path)
        if not (is_audio_name(path.name, extensions)
                or is_audio_name(Path(target).name, extensions)):
            return None
        if exc.errno == errno.ELOOP:
            return f"symlink loop (-> {target})"
        return f"dangling symlink (-> {target}): {exc.strerror}"


def _is_relative_to(path: Path, other: Path) -> bool:
    try:
        path.relative_to(other)
        return True
    except ValueError:
        return False


def mirror_names(relatives: Sequence[Path], suffix: str) -> list[Path]:
    """Output paths (relative, in the order given) for input paths ``relatives``.

    Each input takes ``suffix`` in place of its own (``b.flac`` -> ``b.wav``); where names
    would meet, every input involved keeps its full name (``b.flac.wav``). That is repeated
    until no two meet (``a.wav`` kept whole as ``a.wav.wav`` can meet ``a.wav.flac`` as
    ``a.wav.wav``, which then keeps its full name too), so the result never repeats a name
    for distinct inputs.

    Raises:
        ValueError: the same input path is given twice.
    """
    if len(set(relatives)) != len(relatives):
        repeated = [str(p) for p, n in Counter(relatives).items() if n > 1]
        raise ValueError(f"input paths given twice: {repeated[:5]}")
    whole = [False] * len(relatives)
    while True:
        names = [rel.with_name(rel.name + suffix) if keep else rel.with_suffix(suffix)
                 for rel, keep in zip(relatives, whole, strict=True)]
        counts = Counter(names)
        clashing = [i for i, name in enumerate(names) if counts[name] > 1 and not whole[i]]
        if not clashing:
            return names
        for i in clashing:
            whole[i] = True


def output_key(output: Path) -> str:
    """The pairing key of an output path: its path without the output suffix, posix."""
    return output.with_suffix("").as_posix()


def reference_keys(relatives: Sequence[Path]) -> dict[str, Path]:
    """Key each reference file by the key (``output_key``) its restored file will carry."""
    return {output_key(name): rel
            for rel, name in zip(relatives, mirror_names(relatives, ".wav"), strict=True)}


def distinct_labels(paths: Sequence[Path]) -> list[Path]:
    """The shortest trailing parts of each path that tell all of them apart.

    ``[/a/y2019/tapes, /b/y2020/tapes, /c/other]`` -> ``[y2019/tapes, y2020/tapes, other]``:
    the names under which several input roots appear in one output folder.
    """
    parts = [p.resolve().parts[1:] for p in paths]
    depth = [1] * len(paths)
    while True:
        labels = [Path(*part[-d:]) if part else Path(p.resolve().anchor)
                  for part, d, p in zip(parts, depth, paths, strict=True)]
        counts = Counter(labels)
        clashing = [i for i, label in enumerate(labels)
                    if counts[label] > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1
