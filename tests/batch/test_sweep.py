"""Sweeps: the run set of a sweep file, a pool of 2 workers or a Dask LocalCluster, restarts that
skip complete runs (also after SIGKILL), failures recorded in the index, index.nc."""

from __future__ import annotations

import csv
import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import gridflow
from gridflow.cli import main
from gridflow.errors import CaseError
from gridflow.batch.sweep import flatten_params, plan_sweep, read_index, run_sweep

BASE = """
[base]
name = "b"
grid = { lower = [-8.0], upper = [10.0], cells = [120] }
target = { kind = "mixture", weights = [0.5, 0.5], components = [{ kind = "gaussian", mean = [0.0], cov = [[1.0]] }, { kind = "gaussian", mean = [3.0], cov = [[1.0]] }] }
initial = { kind = "gaussian", mean = [0.0], cov = [[1.0]] }
flow = { kind = "wfr" }
tempering = { schedule = { kind = "linear", duration = 1.0 } }
time = { end = 0.5, save_every = 0.25 }
"""

# 2 flows x 3 initial means = 6 runs; initial mean 40 lies outside the box [-8, 10]: the run fails
# in its worker (DensityError when the problem is built), once per flow
SWEEP = 'name = "t"\n' + BASE + """
[vary]
"flow.kind" = ["fokker-planck", "wfr"]
[zip]
"initial.mean" = [[0.0], [1.0], [40.0]]
"initial.cov" = [[[1.0]], [[0.5]], [[1.0]]]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    (d / "s.toml").write_text(SWEEP)
    finished = []
    index = run_sweep(d / "s.toml", output=d / "out", workers=2, on_result=lambda r: finished.append(r.index))
    return d, index, finished


def _rows(index):
    return {int(r["run"]): r for r in read_index(index)}


def test_sweep_runs_records_and_fails(swept):
    d, index, finished = swept
    rows = _rows(index)
    assert sorted(finished) == list(range(6)) and sorted(rows) == list(range(6))
    # product order: flow.kind outer, zip inner
    assert [rows[i]["flow.kind"] for i in range(6)] == ["fokker-planck"] * 3 + ["wfr"] * 3
    assert [float(rows[i]["initial.mean[0]"]) for i in range(6)] == [0.0, 1.0, 40.0] * 2
    failed = {i for i, r in rows.items() if r["status"] == "failed"}
    assert failed == {2, 5}
    for i in failed:
        assert rows[i]["error"].startswith("DensityError") and "box" in rows[i]["error"]
    for i in set(rows) - failed:
        r = rows[i]
        assert r["status"] == "complete" and r["error"] == ""
        tr = gridflow.open_trajectory(index.parent / r["path"])
        assert tr.status == "complete" and float(r["final_time"]) == 0.5
        assert float(r["final_kl"]) == tr.kl[-1] and float(r["wall_time"]) > 0
        case = tr.case
        assert case["flow"]["kind"] == r["flow.kind"]
        assert case["initial"]["mean"] == [float(r["initial.mean[0]"])]
        assert case["initial"]["cov"] == [[float(r["initial.cov[0][0]"])]]
    # the same case run alone gives the same trajectory as inside the pool
    case = gridflow.open_trajectory(index.parent / rows[4]["path"]).case
    alone = gridflow.run(_case(case), output=d / "alone.h5")
    np.testing.assert_array_equal(gridflow.open_trajectory(alone).density,
                                  gridflow.open_trajectory(index.parent / rows[4]["path"]).density)


def _case(case):
    from gridflow.io.case import parse_case

    return parse_case(case)


def test_restart_skips_complete_runs_and_retries_the_rest(swept):
    d, index, _ = swept
    before = _rows(index)
    files = {i: (index.parent / r["path"]) for i, r in before.items()}
    stamps = {i: p.stat().st_mtime_ns for i, p in files.items() if p.exists() and before[i]["status"] == "complete"}
    # a run "killed midway": its file and index row gone
    files[1].unlink()
    again = []
    run_sweep(d / "s.toml", output=d / "out", workers=2, on_result=lambda r: again.append(r.index))
    assert sorted(again) == [1, 2, 5]          # the missing run and the two failed ones; not the complete ones
    after = _rows(index)
    for i, stamp in stamps.items():
        if i != 1:
            assert files[i].stat().st_mtime_ns == stamp
            assert after[i]["wall_time"] == before[i]["wall_time"]   # kept from the first index
    assert after[1]["status"] == "complete" and after[1]["final_kl"] == before[1]["final_kl"]
    assert after[2]["status"] == after[5]["status"] == "failed"


def test_random_draws_are_reproducible_and_in_range(tmp_path):
    text = 'name = "r"\n' + BASE + """
[vary]
tempering = [{ unset = true }, { schedule = { kind = "exponential", rate = 2.0 } }]
[random]
draws = 4
seed = 11
"target.components[1].mean" = { uniform = [2.0, 5.0], shape = [1] }
"target.weights" = { dirichlet = [1.0, 2.0] }
"flow.diffusion" = { loguniform = [0.1, 10.0] }
"grid.cells" = { integers = [100, 140], shape = [1] }
"flow.kind" = { choice = ["fokker-planck", "wfr"] }
"""
    (tmp_path / "r.toml").write_text(text)
    runs, out, info = plan_sweep(tmp_path / "r.toml")
    again, _, _ = plan_sweep(tmp_path / "r.toml")
    assert len(runs) == 8 and info["axes"] == ["draw", "tempering"]
    assert [r.params for r in runs] == [r.params for r in again]
    assert all(r.case is not None for r in runs)
    for r in runs:
        p = r.params
        assert r.draw == r.index // 2
        assert 2.0 <= p["target.components[1].mean"][0] <= 5.0
        assert math.isclose(sum(p["target.weights"]), 1.0, rel_tol=1e-12) and min(p["target.weights"]) > 0
        assert 0.1 <= p["flow.diffusion"] <= 10.0 and 100 <= p["grid.cells"][0] <= 140
        assert r.case["target"]["weights"] == p["target.weights"]
        assert r.case["grid"]["cells"] == p["grid.cells"]
        assert ("tempering" in r.case) == (r.index % 2 == 1)
    draws = {tuple(r.params["target.components[1].mean"]) for r in runs}
    assert len(draws) == 4                     # one value per draw, shared by the runs of that draw
    other = plan_sweep(tomllib.loads(text.replace("seed = 11", "seed = 12")), base_dir=tmp_path)[0]
    assert other[0].params["target.components[1].mean"] != runs[0].params["target.components[1].mean"]
    assert flatten_params(runs[1].params)["tempering.schedule.rate"] == 2.0
    assert "tempering.schedule.kind" not in flatten_params(runs[0].params)


def test_invalid_combination_is_recorded_not_fatal(tmp_path):
    (tmp_path / "case.toml").write_text(_base_file())
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "v"\nbase = "case.toml"\n[vary]\n"initial.cov" = [[[1.0]], [[-1.0]]]\n')
    index = run_sweep(sweep, output=tmp_path / "o", workers=2)
    rows = _rows(index)
    assert rows[0]["status"] == "complete"
    assert rows[1]["status"] == "failed" and "initial.cov" in rows[1]["error"]
    with open(index, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:2] == ["run", "initial.cov[0][0]"] and "final_kl" in header and "error" in header


def _base_file() -> str:
    import tomli_w

    return tomli_w.dumps(tomllib.loads(BASE)["base"])


@pytest.mark.parametrize("text, match", [
    ('name = "x"\nbase = "missing.toml"\n', "does not exist"),
    ('name = "x"\n' + BASE + '[vary]\n"flow.kind" = "wfr"\n', "non-empty list"),
    ('name = "x"\n' + BASE + '[zip]\na = [1, 2]\nb = [1]\n', "different lengths"),
    ('name = "x"\n' + BASE + '[random]\ndraws = 2\n"flow.diffusion" = { uniform = [2.0, 1.0] }\n', "high > low"),
    ('name = "x"\n' + BASE + '[vary]\n"flow.kind" = ["nope"]\n', "no run of the sweep is a valid case"),
    ('name = "x"\nbogus = 1\n' + BASE, "unknown key 'bogus'"),
])
def test_bad_sweep_files(tmp_path, text, match):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(CaseError, match=match):
        plan_sweep(tmp_path / "s.toml")


def test_cli_sweep(tmp_path, capsys):
    (tmp_path / "s.toml").write_text('name = "c"\n' + BASE + '[set]\n"grid.cells" = [100]\n'
                                     '[vary]\n"time.end" = [0.25, 0.5]\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--dry-run"]) == 0
    assert "time.end=0.25" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "o"), "--workers", "1", "-q"]) == 0
    assert "2 complete" in capsys.readouterr().err
    assert [float(r["final_time"]) for r in read_index(tmp_path / "o" / "index.csv")] == [0.25, 0.5]
    tr = gridflow.open_trajectory(tmp_path / "o" / "c-0001.h5")
    assert tr.case["grid"]["cells"] == [100] and tr.case["name"] == "c-0001" and tr.density.shape == (3, 100)
    (tmp_path / "bad.toml").write_text('name = "c"\n')
    assert main(["sweep", str(tmp_path / "bad.toml")]) == 2
    assert "base is required" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "s.toml"), "--workers", "0"]) == 2


def _start_long_sweep(tmp_path, out, **popen):
    """``gridflow sweep --workers 2`` in a new process: 6 runs of a few seconds each, into ``out`` (long
    enough that a signal sent after the first run completes finds the sweep still running)."""
    import os
    import subprocess

    (tmp_path / "s.toml").write_text('name = "k"\n' + BASE.replace("end = 0.5", "end = 8.0") + """
[set]
"grid.cells" = [3000]
"flow.kind" = "fokker-planck"
[vary]
"initial.mean" = [[0.0], [0.5], [1.0], [-0.5], [-1.0], [1.5]]
""")
    env = dict(os.environ, PYTHONPATH=str(Path(gridflow.__file__).parents[1]))
    return subprocess.Popen([sys.executable, "-m", "gridflow", "sweep", str(tmp_path / "s.toml"), "-o", str(out),
                             "--workers", "2", "-q"], env=env, **popen)


def test_sigterm_stops_the_sweep_and_a_rerun_finishes_it(tmp_path):
    """SIGTERM (like Ctrl-C) stops the workers, marks their runs interrupted, writes the index;
    the rerun continues the interrupted files and leaves the complete ones alone."""
    import signal
    import subprocess
    import time

    from gridflow.io.trajectory import trajectory_attrs

    out = tmp_path / "o"
    proc = _start_long_sweep(tmp_path, out, stderr=subprocess.PIPE, text=True)

    def statuses():
        found = {}
        for p in out.glob("k-*.h5"):
            try:
                found[p.name] = trajectory_attrs(p).get("status")
            except Exception:  # a file being created or written can be momentarily unreadable
                pass
        return found

    deadline = time.monotonic() + 240
    while "complete" not in statuses().values() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.skip("the sweep finished before it could be interrupted")
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    before = statuses()
    assert "complete" in before.values() and set(before.values()) <= {"complete", "interrupted"}, (before, err)
    complete = {name for name, s in before.items() if s == "complete"}
    rows = {r["path"]: r["status"] for r in read_index(out / "index.csv")}
    assert {p for p, s in rows.items() if s == "complete"} <= complete and len(rows) == 6
    pytest.importorskip("xarray")
    partial = gridflow.open_dataset(out, status=None)    # statuses from the files, NaN past a run's last frame
    assert set(partial["status"].values) <= {"complete", "interrupted"}      # a file without frames is left out
    assert list(partial["status"].values).count("complete") == len(complete)
    assert np.isfinite(partial["kl"].where(partial["status"] == "complete", drop=True)).all()
    again = []
    run_sweep(tmp_path / "s.toml", output=out, workers=2, on_result=lambda r: again.append(r.path.name))
    assert sorted(again) == sorted({f"k-{i:04d}.h5" for i in range(6)} - complete)
    assert set(statuses().values()) == {"complete"}


def test_index_as_netcdf_table(swept):
    """index.nc: the rows of index.csv as a netCDF table, numbers as numbers (empty -> NaN)."""
    xr = pytest.importorskip("xarray")
    _, index, _ = swept
    rows = _rows(index)
    with xr.open_dataset(index.parent / "index.nc", engine="h5netcdf") as table:
        assert list(table["run"].values) == sorted(rows)
        for i, row in rows.items():
            assert str(table["status"].values[i]) == row["status"] and str(table["path"].values[i]) == row["path"]
            assert str(table["flow.kind"].values[i]) == row["flow.kind"]
            assert table["initial.mean[0]"].values[i] == float(row["initial.mean[0]"])
            assert table["wall_time"].values[i] == float(row["wall_time"])
            if row["status"] == "complete":
                assert table["final_kl"].values[i] == float(row["final_kl"])
            else:
                assert np.isnan(table["final_kl"].values[i]) and str(table["error"].values[i]) == row["error"]


def test_sigkill_leaves_no_lying_file_and_a_rerun_computes_only_the_missing_runs(tmp_path):
    """Killed outright (SIGKILL to the whole process group): a run's file is written only when the
    run ends, so every file at a run's path is complete; the rerun computes exactly the others and
    leaves no temporary file behind."""
    import os
    import signal
    import subprocess
    import time

    from gridflow.io.trajectory import trajectory_attrs

    out = tmp_path / "o"
    proc = _start_long_sweep(tmp_path, out, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("k-*.h5")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the sweep finished before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    # the killed workers' temporary files name them; wait until they are reaped (a live writer's
    # temporary file is left alone by the next writer)
    writers = {int(p.name.split(".")[-2]) for p in out.glob(".k-*.tmp")}
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in writers) and time.monotonic() < deadline:
        time.sleep(0.1)
    files = {p.name: p for p in out.glob("k-*.h5")}
    assert files and len(files) < 6
    assert {name: trajectory_attrs(p)["status"] for name, p in files.items()} == dict.fromkeys(files, "complete")
    stamps = {name: p.stat().st_mtime_ns for name, p in files.items()}
    again = []
    run_sweep(tmp_path / "s.toml", output=out, workers=2, on_result=lambda r: again.append(r.path.name))
    assert sorted(again) == sorted({f"k-{i:04d}.h5" for i in range(6)} - set(files))
    assert {name: p.stat().st_mtime_ns for name, p in files.items()} == stamps
    assert [r["status"] for r in read_index(out / "index.csv")] == ["complete"] * 6
    assert not list(out.glob(".k-*.tmp"))


def test_one_worker_runs_in_this_process(tmp_path, monkeypatch):
    import gridflow.batch.pool as pool_module

    def no_pool(*args, **kwargs):
        raise AssertionError("workers=1 must not start a process pool")

    monkeypatch.setattr(pool_module.cf, "ProcessPoolExecutor", no_pool)
    (tmp_path / "s.toml").write_text('name = "one"\n' + BASE + '[vary]\n"time.end" = [0.25, 0.5]\n')
    index = run_sweep(tmp_path / "s.toml", output=tmp_path / "o", workers=1)
    assert [r["status"] for r in read_index(index)] == ["complete", "complete"]
    with pytest.raises(AssertionError, match="must not start"):
        run_sweep(tmp_path / "s.toml", output=tmp_path / "o2", workers=2)


_AFTER_A_KERNEL = """
import json, sys
import concurrent.futures as cf
import numba, numpy as np
from gridflow.analysis.kl_kernel import kl_sum
from gridflow.batch.sweep import read_index, run_sweep

kl_sum(np.zeros(10**5), np.zeros(10**5))       # a parallel kernel runs in this process
out = {"layer": numba.threading_layer()}
try:                                            # is a plain forked child that runs one safe here?
    with cf.ProcessPoolExecutor(1) as pool:
        pool.submit(kl_sum, np.zeros(10**5), np.zeros(10**5)).result()
    out["plain_fork"] = "ok"
except cf.process.BrokenProcessPool:
    out["plain_fork"] = "died"
index = run_sweep(sys.argv[1], output=sys.argv[2], workers=2)
out["statuses"] = [r["status"] for r in read_index(index)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("layer", ["omp", "default"])
def test_sweep_after_a_parallel_kernel_on_any_threading_layer(tmp_path, layer):
    """A sweep started in a process that has already run numba's parallel kernels gets working workers
    on every threading layer: with GNU OpenMP (not fork-safe) a plainly forked child that runs a
    kernel dies, so the pool's workers come from a fork server; with TBB (the installed default on
    Linux) forking is safe."""
    import json
    import os
    import subprocess

    (tmp_path / "s.toml").write_text('name = "k"\n' + BASE + '[vary]\n"time.end" = [0.25, 0.5, 0.75]\n')
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    done = subprocess.run([sys.executable, "-c", _AFTER_A_KERNEL, str(tmp_path / "s.toml"), str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["statuses"] == ["complete"] * 3
    if layer == "default":
        import platform

        if platform.system() == "Linux" and platform.machine() == "x86_64":   # where the tbb wheel installs
            assert out["layer"] == "tbb" and out["plain_fork"] == "ok"
    elif out["plain_fork"] == "ok":
        pytest.skip("this OpenMP runtime is fork-safe: nothing to guard against")
    else:
        assert out["layer"] == "omp"


def test_local_cluster_gives_the_local_pool_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    (tmp_path / "s.toml").write_text(SWEEP)
    pool_index = run_sweep(tmp_path / "s.toml", output=tmp_path / "pool", workers=2)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        seen = []
        index = run_sweep(tmp_path / "s.toml", output=tmp_path / "dask", scheduler=cluster.scheduler_address,
                          on_result=lambda r: seen.append(r.index))
        assert sorted(seen) == list(range(6))
        again = []                                  # a rerun on the cluster skips the complete runs
        run_sweep(tmp_path / "s.toml", output=tmp_path / "dask", scheduler=cluster.scheduler_address,
                  on_result=lambda r: again.append(r.index))
        assert sorted(again) == [2, 5]              # the two failed runs (initial density outside the box)
    rows, pool_rows = read_index(index), read_index(pool_index)
    assert len(rows) == len(pool_rows) == 6
    for row, ref in zip(rows, pool_rows):
        assert {k: v for k, v in row.items() if k != "wall_time"} == {k: v for k, v in ref.items() if k != "wall_time"}
        if row["status"] != "complete":
            continue
        a = gridflow.open_trajectory(index.parent / row["path"])
        b = gridflow.open_trajectory(pool_index.parent / ref["path"])
        # the same computation in another process: equal to round-off
        np.testing.assert_allclose(a.log_density, b.log_density, rtol=1e-13, atol=0)
        np.testing.assert_allclose(a.density, b.density, rtol=1e-13, atol=0)
        assert a.attrs["case"].replace("/dask/", "/pool/") == b.attrs["case"] and a.status == "complete"


def test_scheduler_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.toml").write_text(SWEEP)
    monkeypatch.setitem(sys.modules, "distributed", None)       # as if not installed
    assert main(["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "needs Dask distributed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    monkeypatch.undo()
    pytest.importorskip("distributed")
    import gridflow.batch.cluster as cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    assert main(["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "Cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_error_estimate_column(tmp_path):
    """``--error-estimate``: every run carries its Richardson estimate, and the index column is the
    largest one over the saved times, read back from the run's own file."""
    import h5py

    (tmp_path / "s.toml").write_text(
        'name = "e"\noutput = "o"\n[base]\nname = "b"\n[base.grid]\nlower = [-6.0]\nupper = [6.0]\ncells = [90]\n'
        '[base.target]\nkind = "gaussian"\nmean = [1.0]\ncov = [[0.5]]\n'
        '[base.initial]\nkind = "gaussian"\nmean = [0.0]\ncov = [[1.0]]\n'
        '[base.flow]\nkind = "fokker-planck"\n[base.time]\nend = 0.5\nsave_every = 0.25\n'
        '[vary]\n"flow.kind" = ["fokker-planck", "wfr"]\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "o"), "--workers", "1", "-q",
                 "--error-estimate"]) == 0
    rows = _rows(tmp_path / "o" / "index.csv")
    assert len(rows) == 2
    for row in rows.values():
        with h5py.File(tmp_path / "o" / row["path"], "r") as f:
            estimates = f["error_estimate"][:]
        assert float(row["error_estimate"]) == np.max(estimates) and 1e-6 < np.max(estimates) < 1e-2
