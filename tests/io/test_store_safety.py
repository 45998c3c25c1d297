"""Output safety of the store: only regular files or new paths are written, one writer per path,
readers see the real file from the first frame on, and I/O errors end cleanly."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gridflow.cli import main
from gridflow.errors import TrajectoryFileError
from gridflow.core.grid import Grid
from gridflow.io.output_safety import OutputLock, check_output_path, lock_path
from gridflow.io.trajectory import open_trajectory
from gridflow.io.trajectory_writer import TrajectoryWriter

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "cases" / "quickstart.toml"
GRID = Grid((-3.0,), (4.0,), (16,))
ATTRS = {"case": 'name = "demo"\n', "flow": "fokker-planck", "scheme": "test"}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _writer(path: Path, attrs=ATTRS, **kw) -> TrajectoryWriter:
    flat = np.full(GRID.shape, -np.log(7.0))
    return TrajectoryWriter(path, grid=GRID, log_target=flat, log_reference=flat, attrs=attrs, **kw)


def _frame(k: int) -> dict:
    rho = np.full(GRID.shape, 1.0 / 7.0) * (1 + 0.01 * np.sin(np.arange(16) + k))
    rho /= rho.sum() * GRID.cell_volume
    return dict(time=0.5 * k, density=rho, lambda_=1.0, mass=1.0, kl=0.1, kl_tempered=0.1,
                fisher_information=0.2, mean=[0.5], covariance=[[4.0]])


def _run_args(path: Path, *extra: str) -> list[str]:
    return ["run", str(CASE), "-o", str(path), "--set", "grid.cells=[200]", "-q", *extra]


# -- what may be written ------------------------------------------------------------------------


def test_a_fifo_is_refused_and_left_alone(tmp_path, capsys):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    with pytest.raises(TrajectoryFileError, match="FIFO .*regular file or a new path"):
        _writer(fifo)
    assert main(_run_args(fifo)) == 2
    err = capsys.readouterr().err
    assert err.startswith("gridflow: error:") and err.count("\n") == 1 and "-o OUT.h5" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not lock_path(fifo).exists() and [p.name for p in tmp_path.iterdir()] == ["pipe.h5"]


def test_a_device_is_refused_without_touching_it():
    before = os.stat("/dev/null")
    with pytest.raises(TrajectoryFileError, match="character device"):
        check_output_path(Path("/dev/null"), noun="trajectory file")  # the check writes nothing
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(TrajectoryFileError, match="is a directory"):
        check_output_path(tmp_path, noun="trajectory file")


def test_a_write_protected_file_is_not_replaced(tmp_path, capsys):
    path = tmp_path / "kept.h5"
    path.write_bytes(b"precious results")
    path.chmod(0o444)
    with pytest.raises(TrajectoryFileError, match="write-protected.*chmod u\\+w"):
        _writer(path)
    assert main(_run_args(path)) == 2
    assert "write-protected" in capsys.readouterr().err
    assert path.read_bytes() == b"precious results" and not lock_path(path).exists()


def test_a_missing_directory_or_nul_byte_is_refused(tmp_path):
    with pytest.raises(TrajectoryFileError, match="does not exist"):
        check_output_path(tmp_path / "nowhere" / "x.h5", noun="trajectory file")
    with pytest.raises(TrajectoryFileError, match="NUL byte"):
        check_output_path(Path(str(tmp_path / "a\x00b.h5")), noun="trajectory file")


# -- one writer per path ------------------------------------------------------------------------


def test_a_second_writer_fails_naming_the_first(tmp_path, capsys):
    path = tmp_path / "out.h5"
    with _writer(path) as first:
        first.write_frame(**_frame(0))
        with pytest.raises(TrajectoryFileError, match=f"process {os.getpid()} is writing it .*out.h5.lock"):
            _writer(path)
        assert main(_run_args(path)) == 2  # the command line gives exit 2, one line
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"process {os.getpid()}" in err
        first.write_frame(**_frame(1))
    tr = open_trajectory(path)
    assert tr.status == "complete" and len(tr.time) == 2  # the first writer's result is intact
    assert not lock_path(path).exists()  # released with the writer
    with _writer(path) as again:  # and the path can be written again
        again.write_frame(**_frame(0))


def test_a_lock_left_by_a_killed_writer_does_not_block(tmp_path):
    path = tmp_path / "out.h5"
    lock_path(path).write_text("999999999")  # a lock file whose holder died (the kernel dropped its flock)
    with _writer(path) as w:
        w.write_frame(**_frame(0))
    assert open_trajectory(path).status == "complete" and not lock_path(path).exists()


def test_the_lock_is_held_across_processes(tmp_path):
    path = tmp_path / "out.h5"
    lock = OutputLock(path, noun="trajectory file")
    try:
        code = ("from gridflow.io.output_safety import OutputLock; from pathlib import Path; "
                f"OutputLock(Path({str(path)!r}), noun='x')")
        proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and f"process {os.getpid()} is writing it" in proc.stderr
    finally:
        lock.release()


# -- readers see the real file from the first frame on ------------------------------------------

READER = textwrap.dedent("""
    import sys, h5py
    f = h5py.File(sys.argv[1], "r", swmr=True)
    print("open", flush=True)
    sys.stdin.readline()
    f["time"].refresh()
    print(len(f["time"]), flush=True)
    sys.stdin.readline()
    f.close()
""")


def test_a_swmr_reader_opened_before_the_first_frame_sees_the_frames_and_the_end(tmp_path):
    path = tmp_path / "out.h5"
    w = _writer(path, attrs={**ATTRS, "total_steps": 0}, extra_names=("steps",))
    inode = os.stat(path).st_ino
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open", reader.stderr.read()
        for k in range(3):
            w.write_frame(**_frame(k), extra={"steps": 3.0})
        w.set_attrs(total_steps=9)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "3"  # the reader has the real file, not a replaced one
        w.close()  # with the reader still open: the status is written in place, in SWMR mode
        assert os.stat(path).st_ino == inode
    finally:
        reader.stdin.write("\n")
        reader.stdin.close()
        reader.wait(timeout=60)
    tr = open_trajectory(path)
    assert tr.status == "complete" and len(tr.time) == 3 and tr.attrs["total_steps"] == 9


def test_a_run_keeps_its_file_from_creation_to_the_end(tmp_path):
    """`gridflow run` never replaces its file after creating it (extras declared up front, status
    and total_steps updated in place): the inode seen when the file appears is the final one."""
    path = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "gridflow", *_run_args(path)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    inode = os.stat(path).st_ino
    assert proc.wait(timeout=300) == 0
    proc.stderr.close()
    assert os.stat(path).st_ino == inode
    tr = open_trajectory(path)
    assert tr.status == "complete" and tr.attrs["total_steps"] == int(np.nansum(tr.extra["steps"]))


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.4, 1.2])
def test_a_kill_at_any_moment_leaves_a_readable_file_with_a_truthful_status(tmp_path, delay):
    path = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "gridflow", *_run_args(path)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    tr = open_trajectory(path)
    assert tr.status in ("running", "complete")
    if tr.status == "complete":  # the kill came after the end: then every frame is there
        assert len(tr.time) == 101
    assert np.all(np.isfinite(tr.density)) and np.all(np.diff(tr.time) > 0)
    assert main(_run_args(path, "--resume")) == 0  # and it can be continued
    assert open_trajectory(path).status == "complete" and len(open_trajectory(path).time) == 101


READER_BEFORE = textwrap.dedent("""
    import sys, h5py
    f = h5py.File(sys.argv[1], "r", swmr=True)
    print(len(f["time"]), f.attrs["status"], flush=True)
    sys.stdin.readline()
    f["time"].refresh()
    f["density"].refresh()
    print(len(f["time"]), f["time"][-1], f["density"].shape[0], flush=True)
    f.close()
""")


def _stopped_run(path: Path, sig: int) -> None:
    """Start `gridflow run` and stop it by ``sig`` once it has written a few frames (and before the end)."""
    proc = subprocess.Popen([sys.executable, "-m", "gridflow", *_run_args(path)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not path.exists() or len(open_trajectory(path).time) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=120)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, "interrupted"), (signal.SIGKILL, "running")])
def test_resume_continues_the_file_in_place_under_a_swmr_reader(tmp_path, sig, status):
    """--resume appends to the same file (same inode, never renamed over), also a file a SIGKILL left
    flagged "open for writing": a SWMR reader opened before the resume sees every new frame after it."""
    path = tmp_path / "out.h5"
    _stopped_run(path, sig)
    before = open_trajectory(path)
    held = len(before.time)
    if before.status == "complete":  # pragma: no cover - the run finished before the signal
        pytest.skip("the run ended before the signal")
    assert before.status == status and 3 <= held < 101
    inode = os.stat(path).st_ino
    reader = subprocess.Popen([sys.executable, "-c", READER_BEFORE, str(path)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = reader.stdout.readline().split()
        assert line and int(line[0]) >= held and line[1] == status, reader.stderr.read()
        assert main(_run_args(path, "--resume")) == 0       # with the reader open all along
        reader.stdin.write("\n")
        reader.stdin.flush()
        n, last, rows = reader.stdout.readline().split()
        assert (int(n), float(last), int(rows)) == (101, 10.0, 101)  # the reader's file got the new frames
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    assert os.stat(path).st_ino == inode
    after = open_trajectory(path)
    assert after.status == "complete" and len(after.time) == 101 and after.attrs["resumed_at"] == before.time[-1]
    np.testing.assert_array_equal(after.density[:held], before.density)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "out.h5"]  # no temporary, no lock left


# -- I/O errors mid-run and SIGTERM -----------------------------------------------------------

FSIZE_RUN = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as `ulimit -f` with the signal ignored: writes fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    from gridflow.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_a_file_size_limit_mid_run_ends_cleanly_and_can_be_resumed(tmp_path):
    path = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, "-c", FSIZE_RUN, "60000", *_run_args(path)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # not a crash (a segfault was -11)
    err = proc.stderr
    assert err.startswith("gridflow: error: Cannot write frame") and err.count("\n") == 1, err
    assert "File too large" in err and "--resume" in err
    tr = open_trajectory(path)
    held = len(tr.time)
    assert 0 < held < 101 and f"The file holds {held} complete frames" in err
    assert tr.status == "running"  # the writer could not finish it: not complete, not failed-and-torn
    assert np.all(np.isfinite(tr.density)) and np.all(np.isfinite(tr.log_density))  # no NaN frame counted
    np.testing.assert_allclose(tr.mass, 1.0, atol=1e-12)
    assert os.path.getsize(path) <= 60000 and not lock_path(path).exists()
    assert main(["info", str(path)]) == 0
    assert main(_run_args(path, "--resume")) == 0
    done = open_trajectory(path)
    assert done.status == "complete" and len(done.time) == 101
    np.testing.assert_array_equal(done.density[:held], tr.density)


def test_sigterm_gives_status_interrupted(tmp_path):
    path = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "gridflow", *_run_args(path)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not path.exists() or not len(open_trajectory(path).time):  # a reader beside the writer
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    proc.stderr.close()
    tr = open_trajectory(path)
    if code == 0:  # pragma: no cover - the run finished before the signal arrived
        pytest.skip("the run ended before SIGTERM")
    assert code == 130 and err.strip() == "gridflow: interrupted"
    assert tr.status == "interrupted" and 0 < len(tr.time) < 101 and not lock_path(path).exists()
