"""Validation studies of ensembles made elsewhere (``gridflow validate CASE --ensembles PATTERN``).

Each file holds one final ensemble of some sampler (a gridflow particle file with ``positions`` /
``log_weights``, or a sample file: ``.npy``, ``.npz``/``.h5`` with ``samples`` and optional
``weights``; read by :class:`gridflow.particles.grid_sampling.EnsembleSource`).  Its number of
particles N, step h and replicate index come from the file name: the pattern has the named fields
``{N}``, ``{step}`` and ``{rep}``, e.g. ``runs/ula_N{N}_h{step}_r{rep}.npz``.  A field missing from
the pattern is read from the file's attributes (``n``, ``step``, ``replicate``; as written by
:func:`gridflow.particles.grid_sampling.save_samples`); N defaults to the number of particles and
the replicate to the file's rank.  The ensembles are then measured exactly as the built-in
samplers' (:func:`gridflow.analysis.validation.analyse_ensembles`; docs/validation.md).
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from gridflow.errors import InputError

__all__ = ["find_ensembles", "validate_ensembles", "FIELDS"]

#: the named fields of a pattern and the file attribute read when a field is not in the pattern
FIELDS = {"N": "n", "step": "step", "rep": "replicate"}
_NUMBER = r"[-+0-9.eE]+?"


def _pattern_regex(pattern: str) -> tuple[str, re.Pattern, list[str]]:
    """The glob of ``pattern`` (fields as ``*``) and a regular expression with one group per field."""
    parts = re.split(r"(\{[^{}]*\})", pattern)
    glob_parts, regex_parts, fields = [], [], []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name not in FIELDS:
                raise InputError(f"The ensembles pattern {pattern!r} has the field {part}; the fields are "
                                 f"{', '.join('{' + f + '}' for f in FIELDS)} (e.g. runs/ula_N{{N}}_h{{step}}_r{{rep}}.npz).")
            if name in fields:
                raise InputError(f"The ensembles pattern {pattern!r} has the field {part} twice; name it once.")
            fields.append(name)
            glob_parts.append("*")
            regex_parts.append(f"(?P<{name}>{_NUMBER})")
        else:
            glob_parts.append(part)
            regex_parts.append(re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))
    return "".join(glob_parts), re.compile("".join(regex_parts) + r"\Z"), fields


def _number(text, kind: Callable, what: str, path: str):
    try:
        value = kind(float(text)) if kind is int else kind(text)
    except (TypeError, ValueError):
        raise InputError(f"'{path}': its {what} {text!r} is not a number; name the files after the pattern "
                         "(e.g. runs/ula_N1000_h0.01_r3.npz) or store the attribute.") from None
    if kind is int and float(text) != value:
        raise InputError(f"'{path}': its {what} {text!r} is not an integer.")
    if not math.isfinite(value):
        raise InputError(f"'{path}': its {what} {text!r} is not a finite number.")
    return value


def find_ensembles(pattern: str | os.PathLike) -> list[dict]:
    """The files matching ``pattern`` with their ``N`` (or None: the number of particles), ``step``
    and ``rep`` (or None: the rank), from the pattern's fields or else the files' attributes."""
    from gridflow.particles.grid_sampling import is_particle_file, read_sample_attrs

    pattern = str(pattern)
    where, regex, fields = _pattern_regex(pattern)
    paths = sorted(glob.glob(where))
    if not paths:
        raise InputError(f"No file matches the ensembles pattern {pattern!r} (searched {where!r}); check the "
                         "directory and the names (fields {N}, {step}, {rep} stand for numbers).")
    out = []
    for path in paths:
        m = regex.match(path)
        if m is None:
            continue
        found = {name: m.group(name) for name in fields}
        missing = [f for f in FIELDS if f not in found]
        if missing:
            attrs = _particle_attrs(path) if is_particle_file(path) else read_sample_attrs(path)
            for f in missing:
                if FIELDS[f] in attrs:
                    found[f] = attrs[FIELDS[f]]
        if found.get("step") is None:
            raise InputError(f"'{path}': no step h (neither a {{step}} field in the pattern nor a 'step' attribute); "
                             "put {step} in the pattern, e.g. runs/ula_N{N}_h{step}_r{rep}.npz.")
        out.append({"path": path, "step": _number(found["step"], float, "step", path),
                    "N": None if found.get("N") is None else _number(found["N"], int, "N", path),
                    "rep": None if found.get("rep") is None else _number(found["rep"], int, "replicate", path)})
    if not out:
        raise InputError(f"{len(paths)} files match {where!r} but none has numbers where the pattern {pattern!r} "
                         "has fields.")
    return out


def _particle_attrs(path: str) -> dict:
    """The root attributes of a gridflow particle file (its sampler's ``step``, ...)."""
    from gridflow.io.particle_file import open_particles

    return dict(open_particles(path).attrs)


def _load(item: dict, dim: int, t: float) -> tuple[np.ndarray, np.ndarray | None]:
    from gridflow.particles.grid_sampling import EnsembleSource

    src = EnsembleSource(item["path"], dim=dim)
    if src.times is not None and not np.any(np.abs(src.times - t) <= 1e-9 * max(1.0, abs(t))):
        raise InputError(f"'{item['path']}' holds the time(s) {src.times.tolist()}, not the study's time {t:g}; "
                         "pass --time or the ensembles at that time.")
    x, w = src.ensemble(t)
    if item["N"] is not None and item["N"] != x.shape[0]:
        raise InputError(f"'{item['path']}' holds {x.shape[0]} particles but its name says N = {item['N']}.")
    return x, (None if w is None else w / w.sum())


def validate_ensembles(case: Mapping | str | os.PathLike, pattern: str | os.PathLike, *, time: float | None = None,
                       seed: int = 0, metrics: Sequence[str] | str | None = None,
                       reference: str | os.PathLike | None = None, confidence: float = 0.95,
                       progress: Callable[[str], None] | None = None, overrides: Sequence[str] = ()) -> dict:
    """A validation study of the ensembles matching ``pattern`` (:func:`find_ensembles`) against the grid
    solution of ``case`` at ``time`` (default ``time.end``): the same table, intervals, slopes,
    replicate tests and verdict as :func:`gridflow.analysis.validation.run_study`.  Every (N, step)
    pair of the values found must have at least 2 replicates; the iid floor uses the largest
    number of replicates."""
    from gridflow.analysis.validation import analyse_ensembles, check_study, grid_reference, verdict

    if not isinstance(case, Mapping):
        from gridflow.io.case import load_case

        case = load_case(case, overrides=list(overrides))
    dim = len(case["grid"]["lower"])
    items = find_ensembles(pattern)
    t_probe = float(case["time"]["end"] if time is None else time)
    for i in items:
        if i["N"] is None:              # N is the number of particles
            i["N"] = int(_load(i, dim, t_probe)[0].shape[0])
    groups: dict[tuple[int, float], list[dict]] = {}
    for i in items:
        groups.setdefault((i["N"], i["step"]), []).append(i)
    particles = sorted({n for n, _ in groups})
    steps = sorted({h for _, h in groups}, reverse=True)
    missing = [f"N={n} step={h:g}" for n in particles for h in steps if len(groups.get((n, h), [])) < 2]
    if missing:
        raise InputError(f"The ensembles matching {str(pattern)!r} need at least 2 replicates for every pair of "
                         f"their N and step values; missing or single: {', '.join(missing)}.")
    replicates = max(len(v) for v in groups.values())
    particles, steps, metrics, t = check_study(case, particles=particles, steps=steps, replicates=replicates,
                                               metrics=metrics, confidence=confidence, time=time)
    grid, density, info = grid_reference(case, t, reference=reference)
    floor_seed, measure_seed = np.random.SeedSequence(seed).spawn(2)
    measure_seeds = measure_seed.spawn(len(particles) * len(steps))

    def produce():
        for k, (n, h) in enumerate((n, h) for n in particles for h in steps):
            reps = sorted(groups[(n, h)], key=lambda i: (i["rep"] is None, i["rep"], i["path"]))
            ensembles = [_load(i, dim, t) for i in reps]
            ess = [float(x.shape[0]) if w is None else float(1.0 / np.sum(w * w)) for x, w in ensembles]
            yield n, h, ensembles, ess, 0.0, np.random.default_rng(measure_seeds[k])

    study = analyse_ensembles(grid, density, produce(), particles=particles, steps=steps, replicates=replicates,
                              time=t, metrics=metrics, floor_seed=floor_seed, confidence=confidence, progress=progress)
    study = {"case": case.get("name", ""), "sampler": f"files {Path(str(pattern)).name}", "sampler_options": {},
             "flow": case["flow"]["kind"], "seed": int(seed), "reference": info, **study, "exact_in_time": False,
             "ensembles": {"pattern": str(pattern), "files": len(items)}}
    study["verdict"] = verdict(study)
    return study
