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
