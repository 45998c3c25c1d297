"""Claim records of the reproductions: verdicts computed from the numbers, and flipped by falsified ones.

The falsification tests take the measured numbers the committed verdicts were computed from
(``docs/reproductions/NAME/claims.json``, key ``"measured"``), rebuild the claims with the
reproduction's own builder, check that the committed verdicts follow, then change one decisive
number per case and check that the verdict flips.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from gridflow.errors import InputError
from gridflow.reproduce.chemseddine import claims as chemseddine_claims
from gridflow.reproduce.crucinio_pathiraja import claims as crucinio_pathiraja_claims
from gridflow.reproduce.claims import (Check, Claim, Measured, claims_table, read_claims, settings_text, write_claims,
                                       write_index)

DOCS = Path(__file__).resolve().parents[2] / "docs"
BUILDERS = {"chemseddine": chemseddine_claims, "crucinio-pathiraja": crucinio_pathiraja_claims}


# --------------------------------------------------------------------------- the record itself


@pytest.mark.parametrize("relation,value,error,bound,holds", [
    ("<=", 1.0, None, 1.0, True), ("<=", 1.1, None, 1.0, False), ("<=", 1.1, 0.1, 1.0, True),
    ("<=", 1.1, 0.09, 1.0, False), ("<", 1.0, None, 1.0, False), (">=", 0.9, 0.1, 1.0, True),
    (">=", 0.89, 0.1, 1.0, False), (">", 2.0, None, 1.0, True), (">=", math.inf, None, math.inf, True),
    (">=", 5.0, None, math.inf, False), ("<=", math.nan, None, 1.0, False),
])
def test_check_relations_respect_error_bars(relation, value, error, bound, holds):
    assert Check("s", Measured("q", value, error), relation, bound).holds is holds


def test_agreement_uses_relative_tolerance_plus_both_error_bars():
    exact = Measured("exact", 100.0, 0.5)
    assert Check("s", Measured("q", 101.3, 0.5), "~", exact, tolerance=4e-3).holds  # 1.3 <= 0.4 + 1.0
    assert not Check("s", Measured("q", 101.5, 0.5), "~", exact, tolerance=4e-3).holds
    with pytest.raises(InputError):
        Check("s", Measured("q", 1.0), "==", 1.0)


def test_verdict_follows_decisive_checks_and_names_failing_settings():
    ok = Check("m = 5, h = 0.1", Measured("q", 1.0), "<=", 2.0)
    bad = Check("m = 5, h = 0.05", Measured("q", 3.0), "<=", 2.0)
    soft = Check("m = 7, h = 0.1", Measured("q", 3.0), "<=", 2.0, decisive=False)
    assert Claim("1", "s", "c", [ok, soft]).verdict == "confirmed"
    assert Claim("1", "s", "c", [ok, soft]).verdict_text == "confirmed; non-decisive checks fail on m = 7, h = 0.1"
    refuted = Claim("1", "s", "c", [ok, bad, soft])
    assert refuted.holds is False and refuted.verdict_text.startswith("refuted (fails on m = 5, h = 0.05)")
    assert Claim("1", "s", "c", [soft]).verdict == "not tested"
    assert Claim("1", "s", "c").holds is None


def test_settings_are_grouped():
    assert settings_text(["m = 5, h = 0.05", "m = 5, h = 0.025", "m = 15, h = 0.05", "a = 2", "a = 2"]) == \
        "m = 5, h = 0.05, 0.025; m = 15, h = 0.05; a = 2"


def test_claims_json_round_trip_recomputes_the_verdict(tmp_path):
    claim = Claim("4", "bounded", "action <= KL", [Check("m = 5", Measured("action", 5.7567, 1e-5), "<=",
                                                          Measured("KL", 5.7566))], [Measured("extra", math.inf)])
    path = write_claims(tmp_path / "claims.json", [claim], title="T", measured={"x": 1})
    doc = json.loads(path.read_text())
    assert doc["claims"][0]["verdict"] == "refuted" and doc["measured"] == {"x": 1}
    # a stored verdict cannot disagree with its numbers: reading recomputes it
    doc["claims"][0]["checks"][0]["quantity"]["value"] = 5.7566
    doc["claims"][0]["verdict"] = "refuted"
    path.write_text(json.dumps(doc))
    head, claims = read_claims(path)
    assert head["title"] == "T" and claims[0].verdict == "confirmed"
    assert math.isinf(claims[0].quantities[0].value)


def test_index_is_generated_from_the_claims_files(tmp_path):
    for name, value in (("paper-a", 1.0), ("paper-b", 3.0)):
        d = tmp_path / "reproductions" / name
        d.mkdir(parents=True)
        write_claims(d / "claims.json", [Claim("1", f"claim of {name}", "q <= 2",
                                               [Check("s", Measured("q", value), "<=", 2.0)], summary=f"q = {value:g}")],
                     title=f"Title {name}")
    text = write_index(tmp_path).read_text()
    assert "## Title paper-a" in text and "## Title paper-b" in text
    assert "| 1 | claim of paper-a | q = 1 | **confirmed** |" in text
    assert "| 1 | claim of paper-b | q = 3 | **refuted** (fails on s) |" in text
    assert "(reproductions-paper-b.md)" in text
    with pytest.raises(InputError):
        read_claims(tmp_path / "missing.json")


def test_claims_table_escapes_pipes():
    table = claims_table([Claim("1", "KL(a | b)", "c", [Check("s", Measured("q", 1.0), "<=", 2.0)], summary="x")])
    assert "KL(a \\| b)" in table and "**confirmed**" in table


# --------------------------------------------------------------------------- falsification


def _measured(name: str) -> dict:
    path = DOCS / "reproductions" / name / "claims.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_committed_verdicts_follow_from_the_committed_numbers(name):
    doc = _measured(name)
    rebuilt = {c.id: c for c in BUILDERS[name].build(doc["measured"])}
    assert [c["id"] for c in doc["claims"]] == list(rebuilt)
    for stored in doc["claims"]:
        assert rebuilt[stored["id"]].verdict == stored["verdict"], stored["id"]
        assert rebuilt[stored["id"]].verdict_text == stored["verdict_text"], stored["id"]


def _set(path: tuple, value):
    def apply(ms: dict) -> None:
        node = ms
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]], ms) if callable(value) else value
    return apply


def _first(rows_key: str, pred, field: str, value):
    def apply(ms: dict) -> None:
        row = next(r for r in ms[rows_key] if pred(r))
        row[field] = value(row, ms) if callable(value) else value
    return apply


def _all(rows_key: str, field: str, value):
    def apply(ms: dict) -> None:
        for r in ms[rows_key]:
            r[field] = value(r) if callable(value) else value
    return apply


FALSIFICATIONS = [
    # chemseddine
    ("chemseddine", "1", "far mode already holds mass at t = 0.5", _set(("path", "50", "mass_right", "0.5"), 0.3)),
    ("chemseddine", "1", "mass travels through a populated valley", _set(("path", "50", "valley_density_t1"), 1e-3)),
    ("chemseddine", "1", "grid mass off the exact one", _set(("path", "15", "mass_right", "0.9"), lambda v, ms: 1.05 * v)),
    ("chemseddine", "2", "polynomial growth in m",
     _set(("path", "50", "ke1"), lambda v, ms: {**v, "value": 1e3 * ms["path"]["15"]["ke1"]["value"],
                                                 "exact": 1e3 * ms["path"]["15"]["ke1"]["value"]})),
    ("chemseddine", "2", "grid off the continuum value", _set(("path", "5", "ke1"),
                                                             lambda v, ms: {**v, "value": v["value"] * 1.001})),
    ("chemseddine", "2", "no explosion towards t = 1", _set(("path", "50", "ke0"),
                                                           lambda v, ms: {**v, "value": ms["path"]["50"]["ke1"]["value"]})),
    ("chemseddine", "3", "peak away from the valley", _set(("path", "15", "argmax_v1"), 0.0)),
    ("chemseddine", "4", "action above the bound",
     _set(("fp", "50", "action"), lambda v, ms: {**v, "value": ms["fp"]["50"]["exact_kl"] + 10 * v["error"] + 1e-9})),
    ("chemseddine", "5", "crossing mixture does not explode",
     _set(("mixtures", "crossing", "8", "ke1"), lambda v, ms: {**v, "value": 64.0})),
    ("chemseddine", "5", "symmetric mixture not a²", _set(("mixtures", "symmetric", "6", "ke1"),
                                                          lambda v, ms: {**v, "value": 40.0})),
    ("chemseddine", "6", "2D closed form missed", _set(("two_d", "0.05", "l1_max"), 0.01)),
    ("chemseddine", "6", "2D path does not grow", _set(("two_d", "0.1", "path_ke1"),
                                                       lambda v, ms: 10 * ms["two_d"]["0.1"]["path_ke0"])),
    # crucinio-pathiraja
    ("crucinio-pathiraja", "1", "one tempered FR run faster", _first("fr_gap", lambda r: True, "min_scaled_gap", -1e-6)),
    ("crucinio-pathiraja", "2", "a flow that does not decay", _first("rates", lambda r: True, "grid", -0.1)),
    ("crucinio-pathiraja", "2", "grid rate 5 % off the exact one",
     _first("rates", lambda r: r["tempered"], "grid", lambda r, ms: 1.05 * r["exact"])),
    ("crucinio-pathiraja", "3", "a tempered 1D run faster, both resolutions",
     _first("times_b", lambda r: r["m"] == 4 and r["flow"] == "FR" and r["schedule"] == "hyperbolic", "t_h2", 0.5),
     _first("times_b", lambda r: r["m"] == 4 and r["flow"] == "FR" and r["schedule"] == "hyperbolic", "t_h", 0.5)),
    ("crucinio-pathiraja", "3", "a tempered 2D run faster",
     _first("times_d", lambda r: r["m"] == 2 and r["flow"] == "WFR" and r["schedule"] == "linear", "t_h", 0.2)),
    ("crucinio-pathiraja", "4", "an adaptive run faster, both resolutions",
     _first("adaptive", lambda r: r["flow"] == "W", "t_h2", lambda r, ms: float(r["plain"]) - 1.0),
     _first("adaptive", lambda r: r["flow"] == "W", "t_h", lambda r, ms: float(r["plain"]) - 1.0)),
    ("crucinio-pathiraja", "5", "a KL value 1 % off on both grids",
     _first("kl_table", lambda r: r["digits"] > 0, "kl_h2", lambda r, ms: r["exact"] * 1.01),
     _first("kl_table", lambda r: r["digits"] > 0, "kl_h", lambda r, ms: r["exact"] * 1.01)),
    ("crucinio-pathiraja", "P", "particles reach the threshold", _all("particles", "reached", lambda r: r["runs"])),
]


@pytest.mark.parametrize("name,claim_id,what,falsify", [(n, c, w, f) for n, c, w, *f in FALSIFICATIONS],
                         ids=[f"{n}-{c}-{w.replace(' ', '_')}" for n, c, w, *_ in FALSIFICATIONS])
def test_a_falsified_number_flips_the_verdict(name, claim_id, what, falsify):
    measured = _measured(name)["measured"]
    builder = BUILDERS[name].BUILDERS[claim_id]
    before = builder(measured)
    assert before.verdict in ("confirmed", "refuted")
    changed = copy.deepcopy(measured)
    for change in falsify:
        change(changed)
    after = builder(changed)
    assert after.verdict in ("confirmed", "refuted") and after.verdict != before.verdict, (what, after.verdict_text)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_claim_has_a_falsification(name):
    covered = {c for n, c, *_ in FALSIFICATIONS if n == name}
    assert covered == set(BUILDERS[name].BUILDERS)


def test_non_decisive_checks_do_not_decide_chemseddine_claim_4():
    measured = copy.deepcopy(_measured("chemseddine")["measured"])
    claim = chemseddine_claims.claim_gradient_flow(measured)
    for m in measured["m"]:  # every grid value below the bound: the failing-grid note disappears
        fp = measured["fp"][str(m)]
        fp["action"]["values"] = [min(v, fp["exact_kl"]) for v in fp["action"]["values"]]
    assert chemseddine_claims.claim_gradient_flow(measured).verdict == claim.verdict
    assert "non-decisive" not in chemseddine_claims.claim_gradient_flow(measured).verdict_text
