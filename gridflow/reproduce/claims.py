"""Claims of a reproduction as records whose verdict is computed, never written by hand.

A :class:`Claim` holds the paper's claim in words, the criterion in words, and a list of
:class:`Check` objects: each compares one measured quantity (a :class:`Measured`, value with an
optional error bar) with a bound (a number or another measured quantity) under a relation
(``<=``, ``>=``, ``<``, ``>``, ``~`` for agreement within a relative tolerance).  A check
*holds* unless the measured numbers violate the relation by more than their error bars.

``Claim.holds`` is the conjunction of the *decisive* checks (``None`` when there is none:
"not tested"); checks marked ``decisive=False`` (for instance the same inequality on the
coarse grids of a refinement, or an asymptotic formula at small parameters) are reported but
do not decide.  ``Claim.verdict`` is ``"confirmed"``, ``"refuted"`` or ``"not tested"``;
``Claim.verdict_text`` adds the settings on which a check fails.

The records are written to ``claims.json`` (:func:`write_claims`) and read back
(:func:`read_claims`); re-reading re-evaluates every check, so a stored verdict cannot
disagree with its numbers.  :func:`claims_table` renders the Markdown table of a report,
:func:`write_index` regenerates ``docs/reproductions.md`` from the published ``claims.json``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridflow.errors import InputError

CONFIRMED, REFUTED, NOT_TESTED = "confirmed", "refuted", "not tested"
RELATIONS = ("<=", ">=", "<", ">", "~")


@dataclass(frozen=True)
class Measured:
    """A measured number: ``value`` with an absolute error bar ``error`` (``None``: none given)."""

    name: str
    value: float
    error: float | None = None

    @property
    def err(self) -> float:
        """The error bar, 0 when none is given."""
        return 0.0 if self.error is None else abs(float(self.error))

    def text(self) -> str:
        """``value`` (``± error``) with 6 significant digits."""
        v = f"{self.value:.6g}"
        return v if self.error is None else f"{v} ± {self.err:.1g}"

    def as_dict(self) -> dict:
        """JSON form."""
        return {"name": self.name, "value": _num(self.value), "error": None if self.error is None else _num(self.error)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Measured:
        """Inverse of :meth:`as_dict`."""
        return cls(str(d["name"]), float(d["value"]), None if d.get("error") is None else float(d["error"]))


def settings_text(settings: Iterable[str]) -> str:
    """Settings joined with "; ", duplicates dropped, and runs sharing the part before the first ", "
    merged: ["m = 5, h = 0.05", "m = 5, h = 0.025"] -> "m = 5, h = 0.05, 0.025"."""
    groups: dict[str, list[str]] = {}
    for s in settings:
        head, _, tail = s.partition(", ")
        tails = groups.setdefault(head, [])
        if tail and tail not in tails:
            tails.append(tail)
    out = []
    for head, tails in groups.items():
        if not tails:
            out.append(head)
            continue
        name, _, _ = tails[0].partition(" = ")
        same = all(t.partition(" = ")[0] == name and " = " in t for t in tails)
        out.append(f"{head}, {name} = " + ", ".join(t.partition(' = ')[2] for t in tails) if same
                   else f"{head}, " + ", ".join(tails))
    return "; ".join(out)


def _num(x: float) -> float | str:
    x = float(x)
    return x if math.isfinite(x) else repr(x)  # JSON has no inf/nan: "inf", "-inf", "nan"


def _as_measured(x: Measured | float, name: str) -> Measured:
    return x if isinstance(x, Measured) else Measured(name, float(x))


@dataclass(frozen=True)
class Check:
    """One comparison ``quantity RELATION bound`` on one setting (a grid, a parameter value, ...).

    For ``<=``/``<`` the check fails only when ``quantity - error`` exceeds ``bound + error``
    (strictly / or equals, for ``<``); ``>=``/``>`` mirror this.  For ``~`` it holds when
    ``|quantity - bound| <= tolerance |bound| + both errors``.
    """

    setting: str
    quantity: Measured
    relation: str
    bound: Measured | float
    tolerance: float = 0.0
    decisive: bool = True

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise InputError(f"Unknown relation {self.relation!r}; choose one of {', '.join(RELATIONS)}.")
        object.__setattr__(self, "bound", _as_measured(self.bound, "bound"))

    @property
    def holds(self) -> bool:
        """Whether the measured numbers satisfy the relation within their error bars."""
        q, b = self.quantity, self.bound
        if math.isnan(q.value) or math.isnan(b.value):
            return False
        slack = q.err + b.err
        lo, hi = q.value - slack, q.value + slack
        if self.relation == "<=":
            return lo <= b.value
        if self.relation == "<":
            return lo < b.value
        if self.relation == ">=":
            return hi >= b.value
        if self.relation == ">":
            return hi > b.value
        return abs(q.value - b.value) <= self.tolerance * abs(b.value) + slack

    def text(self) -> str:
        """``setting: quantity = value REL bound`` in words."""
        rel = {"~": "≈", "<=": "≤", ">=": "≥"}.get(self.relation, self.relation)
        tol = f" (to {self.tolerance:.2g} relative)" if self.relation == "~" and self.tolerance else ""
        return (f"{self.setting}: {self.quantity.name} = {self.quantity.text()} {rel} {self.bound.name} = "
                f"{self.bound.text()}{tol}")

    def as_dict(self) -> dict:
        """JSON form (with the computed ``holds``)."""
        return {"setting": self.setting, "quantity": self.quantity.as_dict(), "relation": self.relation,
                "bound": self.bound.as_dict(), "tolerance": self.tolerance, "decisive": self.decisive,
                "holds": self.holds}

    @classmethod
    def from_dict(cls, d: Mapping) -> Check:
        """Inverse of :meth:`as_dict` (``holds`` is recomputed, not read)."""
        return cls(str(d["setting"]), Measured.from_dict(d["quantity"]), str(d["relation"]),
                   Measured.from_dict(d["bound"]), float(d.get("tolerance", 0.0)), bool(d.get("decisive", True)))


@dataclass(frozen=True)
class Claim:
    """A claim of a paper, the criterion that tests it, and the checks on the measured numbers.

    ``quantities`` are further measured numbers reported with the claim but not compared
    (for instance a relative difference from an asymptotic formula).
    """

    id: str
    statement: str
    criterion: str
    checks: tuple[Check, ...] = ()
    quantities: tuple[Measured, ...] = ()
    summary: str = ""
    """What was measured, in one sentence (the report's "grid result" column)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "quantities", tuple(self.quantities))

    @property
    def holds(self) -> bool | None:
        """All decisive checks hold (``None`` when the claim has no decisive check)."""
        decisive = [c for c in self.checks if c.decisive]
        return None if not decisive else all(c.holds for c in decisive)

    @property
    def verdict(self) -> str:
        """``"confirmed"``, ``"refuted"`` or ``"not tested"``, from :attr:`holds`."""
        return {True: CONFIRMED, False: REFUTED, None: NOT_TESTED}[self.holds]

    @property
    def failures(self) -> list[Check]:
        """The checks that do not hold, decisive or not."""
        return [c for c in self.checks if not c.holds]

    @property
    def verdict_text(self) -> str:
        """The verdict, followed by the settings on which a check fails (decisive ones first)."""
        text = self.verdict
        bad = [c.setting for c in self.failures if c.decisive]
        info = [c.setting for c in self.failures if not c.decisive]
        if bad:
            text += " (fails on " + settings_text(bad) + ")"
        if info:
            text += ("; " if bad else "; ") + "non-decisive checks fail on " + settings_text(info)
        return text

    def measured(self) -> dict[str, Measured]:
        """Every measured quantity of the claim by name (checked ones and reported ones)."""
        out: dict[str, Measured] = {}
        for c in self.checks:
            out[c.quantity.name] = c.quantity
        for q in self.quantities:
            out[q.name] = q
        return out

    def as_dict(self) -> dict:
        """JSON form (with the computed ``holds`` and ``verdict``)."""
        return {"id": self.id, "statement": self.statement, "criterion": self.criterion, "summary": self.summary,
                "holds": self.holds, "verdict": self.verdict, "verdict_text": self.verdict_text,
                "checks": [c.as_dict() for c in self.checks], "quantities": [q.as_dict() for q in self.quantities]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Claim:
        """Inverse of :meth:`as_dict`; the verdict is recomputed from the checks."""
        return cls(str(d["id"]), str(d["statement"]), str(d["criterion"]),
                   tuple(Check.from_dict(c) for c in d.get("checks", ())),
                   tuple(Measured.from_dict(q) for q in d.get("quantities", ())), str(d.get("summary", "")))


@dataclass(frozen=True)
class Judgement:
    """A claim judged on the measured numbers: what a function registered with
    :meth:`ClaimBook.claim` returns (the :class:`Claim` fields other than id and statement)."""

    criterion: str
    checks: Sequence[Check]
    summary: str
    quantities: Sequence[Measured] = ()


class ClaimBook:
    """The claims of one paper: each judging function is registered under the claim's id
    (:meth:`claim`), its docstring being the claim in the paper's words, and :meth:`build` makes
    every record from the measured numbers."""

    def __init__(self) -> None:
        #: claim id -> the function that builds its :class:`Claim` from the measured numbers
        self.builders: dict[str, Callable[[Mapping], Claim]] = {}

    def claim(self, id: str) -> Callable[[Callable[[Mapping], Judgement]], Callable[[Mapping], Claim]]:
        """Decorator: the function judges claim ``id`` on the measured numbers and returns a
        :class:`Judgement`; its docstring, on one line, is the claim's statement.  Decorated, it
        returns the :class:`Claim`."""

        def register(judge: Callable[[Mapping], Judgement]) -> Callable[[Mapping], Claim]:
            if id in self.builders:
                raise InputError(f"Claim {id!r} is registered twice ({judge.__name__}); give each claim its own id.")
            if not judge.__doc__:
                raise InputError(f"The judging function {judge.__name__} of claim {id!r} has no docstring; "
                                 "write the claim in the paper's words there.")
            statement = " ".join(judge.__doc__.split())

            @functools.wraps(judge)
            def build_claim(ms: Mapping) -> Claim:
                j = judge(ms)
                return Claim(id, statement, j.criterion, j.checks, j.quantities, j.summary)

            self.builders[id] = build_claim
            return build_claim

        return register

    def build(self, ms: Mapping) -> list[Claim]:
        """Every claim record of the paper, in the order registered, judged on the measured numbers ``ms``."""
        return [build_claim(ms) for build_claim in self.builders.values()]


def write_claims(path: str | Path, claims: Sequence[Claim], *, title: str, report: str = "",
                 measured: Mapping | None = None) -> Path:
    """Write ``claims.json``: the reproduction's ``title``, its report's name, every claim record and
    (``measured``) the numbers the claims were built from."""
    path = Path(path)
    doc = {"title": title, "report": report, "claims": [c.as_dict() for c in claims]}
    if measured is not None:
        doc["measured"] = measured
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_claims(path: str | Path) -> tuple[dict, list[Claim]]:
    """Read a ``claims.json``: (its header without the claims, the claims with recomputed verdicts)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read claims file {path}: {exc}") from None
    claims = [Claim.from_dict(c) for c in doc.get("claims", ())]
    return {k: v for k, v in doc.items() if k != "claims"}, claims


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_table(claims: Iterable[Claim], *, details: bool = True) -> str:
    """Markdown table of ``claims``: id, claim, criterion (with ``details``), grid result, verdict."""
    lines = ["| # | claim | criterion | grid result | verdict |", "|---|---|---|---|---|"] if details else \
        ["| # | claim | grid result | verdict |", "|---|---|---|---|"]
    for c in claims:
        verdict = f"**{c.verdict}**" + c.verdict_text[len(c.verdict):]
        if details:
            lines.append(f"| {c.id} | {_cell(c.statement)} | {_cell(c.criterion)} | {_cell(c.summary)} | "
                         f"{_cell(verdict)} |")
        else:
            lines.append(f"| {c.id} | {_cell(c.statement)} | {_cell(c.summary)} | {_cell(verdict)} |")
    return "\n".join(lines)


def checks_table(claims: Iterable[Claim]) -> str:
    """Markdown table of every check of every claim: setting, comparison, decisive, holds."""
    lines = ["| claim | setting | quantity | relation | bound | decisive | holds |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        for k in c.checks:
            rel = {"~": f"≈ (rel. {k.tolerance:.2g})", "<=": "≤", ">=": "≥"}.get(k.relation, k.relation)
            lines.append(f"| {c.id} | {_cell(k.setting)} | {_cell(k.quantity.name)} = {k.quantity.text()} | {rel} | "
                         f"{_cell(k.bound.name)} = {k.bound.text()} | {'yes' if k.decisive else 'no'} | "
                         f"{'yes' if k.holds else '**no**'} |")
    return "\n".join(lines)


INDEX_HEADER = """# Reproductions of the motivating papers

gridflow was built to check theory papers about sampling dynamics against the exact PDE. Each
reproduction is regenerated, numbers, figures and verdicts alike, by one command from the case
files in `cases/papers/`:

```bash
gridflow reproduce all --publish docs      # or: gridflow reproduce NAME --publish docs
```

The command writes everything (report, `claims.json`, JSON/CSV tables, PNG figures) to
`outputs/reproduce/NAME/`; `--publish docs` copies the report and figures to `docs/`, the claim
records to `docs/reproductions/NAME/claims.json`, and regenerates this page from those records.
Every verdict below is computed: each claim is a list of checks (a measured quantity, with its
error bar where there is one, compared with a bound); the claim is *confirmed* when its decisive
checks hold, *refuted* when one fails, *not tested* when it has none. Settings on which a check
fails are named next to the verdict. This file is generated; do not edit it by hand.
"""


def write_index(docs_dir: str | Path) -> Path:
    """Regenerate ``docs_dir/reproductions.md`` from ``docs_dir/reproductions/*/claims.json``."""
    docs = Path(docs_dir)
    parts = [INDEX_HEADER]
    for path in sorted((docs / "reproductions").glob("*/claims.json")):
        head, claims = read_claims(path)
        name = path.parent.name
        parts.append(f"## {head.get('title', name)}\n")
        report = head.get("report") or f"reproductions-{name}.md"
        parts.append(f"Full report: [{report}]({report}); claim records: "
                     f"[reproductions/{name}/claims.json](reproductions/{name}/claims.json).\n")
        counts = {v: sum(c.verdict == v for c in claims) for v in (CONFIRMED, REFUTED, NOT_TESTED)}
        parts.append(", ".join(f"{n} {v}" for v, n in counts.items()) + ".\n")
        parts.append(claims_table(claims, details=False) + "\n")
    target = docs / "reproductions.md"
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
