"""The command line starts fast: `gridflow --help` and `import gridflow` load no heavy module.

Start-up time is a benchmark matter (the machine's load decides a wall-clock figure); what a test
can pin is the cause: which modules are imported.  scipy.stats alone costs ~0.7 s, findiff pulls
in sympy (~0.3 s), matplotlib ~0.3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("scipy", "sympy", "findiff", "matplotlib", "numba", "h5py", "xarray", "pandas", "tqdm")

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("code", [
    "import gridflow",
    "from gridflow.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from gridflow.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass",
])
def test_start_up_loads_no_heavy_module(code):
    assert not (_loaded(code) & set(HEAVY)), _loaded(code) & set(HEAVY)


def test_a_run_loads_neither_sympy_nor_findiff_nor_scipy_stats(tmp_path):
    """A whole `gridflow run` (solve, diagnostics, file) needs no symbolic algebra (findiff pulls in
    sympy, ~0.4 s per process) and no scipy.stats (~0.7 s)."""
    case = tmp_path / "c.toml"
    case.write_text('name = "s"\n[grid]\nlower = [-4.0]\nupper = [4.0]\ncells = [60]\n'
                    '[target]\nkind = "gaussian"\nmean = [1.0]\ncov = [[0.5]]\n'
                    '[initial]\nkind = "gaussian"\nmean = [0.0]\ncov = [[1.0]]\n'
                    '[flow]\nkind = "wfr"\n[time]\nend = 0.2\nsave_every = 0.1\n')
    code = (f"from gridflow.cli import main\nassert main(['run', {str(case)!r}, '-q', '-o', "
            f"{str(tmp_path / 'o.h5')!r}]) == 0\nprint(json.dumps([m for m in sys.modules if m.startswith('scipy.stats')]))")
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[-2]) == []
    assert not ({"sympy", "findiff"} & set(json.loads(lines[-1])))
