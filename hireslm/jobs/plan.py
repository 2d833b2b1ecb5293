"""Which input goes to which output: decided once, for the whole run, before any work.

Every input file found gets its own output path (``hireslm.audiotree.mirror_names``) or a
``Unplanned`` record saying why it cannot be taken; the output folder never holds an input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hireslm.audiotree import distinct_labels, mirror_names, scan_audio

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One input file and where its restoration goes."""

    input: Path
    output: Path
    size_bytes: int


@dataclass(frozen=True)
class Unplanned:
    """Something found among the inputs that gets no job: ``status`` is ``failed`` when an
    input is lost to the run (dangling link, unreadable folder), ``skipped`` when it is taken
    under another name already (a second link to one file or folder) or is no input (a link
    into the output folder)."""

    input: Path
    status: str
    reason: str


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    unplanned: list[Unplanned] = field(default_factory=list)


def plan_jobs(inputs: Sequence[str | Path], out_dir: str | Path, suffix: str = ".wav") -> Plan:
    """Map input files and folders (searched recursively) to outputs under ``out_dir``.

    One folder is mirrored into ``out_dir``, and one file lands in it by name. Several inputs
    each keep their name (folders as sub-folders); inputs of one name (``y2019/tapes``,
    ``y2020/tapes``) keep as many of their parent folders as tell them apart.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: ``out_dir`` is a file, is inside an input folder, or holds an input.
    """
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file: -o names the folder the restored files go to")
    roots = list(dict.fromkeys(Path(p).resolve() for p in inputs))
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        _check_apart(root, out_dir)
    labels = [Path() if root.is_dir() else Path(root.name) for root in roots] \
        if len(roots) == 1 else distinct_labels(roots)
    plan = Plan()
    found: dict[Path, tuple[Path, Path]] = {}  # real file -> (input path, path under out_dir)
    for root, label in zip(roots, labels, strict=True):
        if not root.is_dir():
            found.setdefault(root, (root, label))
            continue
        tree = scan_audio(root, skip_inside=[out_dir])
        plan.unplanned += [
            Unplanned(p.path, "failed" if p.lost else "skipped", p.reason)
            for p in tree.problems
        ]
        for rel in tree.files:
            path = root / rel
            if path.resolve() in found:
                logger.info("%s: also found as another input; restored once", path)
                continue
            found[path.resolve()] = (path, label / rel)
    taken: dict[Path, Path] = {}
    for path, rel in found.values():
        if rel in taken:  # a file input named like a file inside a folder input
            plan.unplanned.append(Unplanned(path, "failed", f"its output name {rel} is also "
                                            f"that of {taken[rel]}; give it on its own"))
        else:
            taken[rel] = path
    outputs = mirror_names(list(taken), suffix)
    plan.jobs = [Job(path, out_dir / output, path.stat().st_size)
                 for path, output in zip(taken.values(), outputs, strict=True)]
    return plan


def _check_apart(root: Path, out_dir: Path) -> None:
    """Refuse an output folder inside an input folder, or one that holds an input."""
    if root.is_dir() and (out_dir == root or root in out_dir.parents):
        raise ValueError(f"output folder {out_dir} is inside input folder {root}: outputs "
                         "would mix with inputs; choose a folder outside it")
    if out_dir in root.parents:
        raise ValueError(f"output folder {out_dir} holds the input {root}: outputs would "
                         "mix with inputs (and could take a file of yours as done); choose "
                         "a folder that holds no input")


def shard_jobs(jobs: Sequence[Job], rank: int, world_size: int) -> list[Job]:
    """This process's share: largest files first, each to the least-loaded process.

    Every process computes the same assignment, so no file is done twice or skipped.
    """
    loads = [0] * world_size
    mine = []
    for job in sorted(jobs, key=lambda j: (-j.size_bytes, str(j.input))):
        owner = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner] += max(job.size_bytes, 1)
        if owner == rank:
            mine.append(job)
    return sorted(mine, key=lambda j: str(j.input))
