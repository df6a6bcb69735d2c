"""The run folder's writer and lock: file modes follow the umask, killed writers' temporaries are
cleaned up, a dead process's lock is taken over, --overwrite clears the old run's outputs, and
config.json records the version and stays a config file that old and new runs load from."""
import json
import os
import stat

import pytest

from dfc_analog import runio
from dfc_analog.config.options import Config, load_config_file
from dfc_analog.errors import DFCError
from dfc_analog.version import __version__


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_follows_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        runio.atomic_write(tmp_path / "a.json", b"{}")
        runio.atomic_write(tmp_path / "a.json", b"{}")       # replacing keeps the rule
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert (tmp_path / "a.json").read_bytes() == b"{}"


def test_a_failed_write_names_the_file(tmp_path):
    with pytest.raises(runio.WriteError, match=r"cannot write '.*nope/a.json': No such file"):
        runio.atomic_write(tmp_path / "nope" / "a.json", b"")


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    stale = tmp_path / f".config.json.{dead_pid()}-0123abcd.tmp"
    mine = tmp_path / f".config.json.{os.getpid()}-0123abcd.tmp"    # a live writer's
    other = tmp_path / f".metrics.csv.{dead_pid()}-0123abcd.tmp"
    for p in (stale, mine, other):
        p.write_bytes(b"half")
    runio.atomic_write(tmp_path / "config.json", b"{}")
    assert not stale.exists() and mine.exists() and other.exists()
    with runio.run_lock(tmp_path):      # opening the folder clears the rest
        pass
    assert not other.exists() and mine.exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / runio.LOCK).write_text(f"{dead_pid()}\n")
    with runio.run_lock(tmp_path):
        assert (tmp_path / runio.LOCK).read_text() == f"{os.getpid()}\n"
        with runio.run_lock(tmp_path):      # re-entrant in one process
            pass
    assert (tmp_path / runio.LOCK).read_text() == ""


def test_lock_refuses_a_second_holder(tmp_path):
    import fcntl
    fd = os.open(tmp_path / runio.LOCK, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)        # another open file: conflicts like another process
    try:
        with pytest.raises(DFCError, match="in use by process 4242"):
            with runio.run_lock(tmp_path):
                pass
    finally:
        os.close(fd)


def test_clear_run_removes_only_the_runs_files(tmp_path):
    names = ["checkpoint.pt", "config.json", "metrics.csv", "weights.npz", "loss_curve.png",
             "evaluation.json", "evaluation-val.json", "confusion_matrix.png",
             "predictions-val.png", "notes.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "validation-wake" / "plots").mkdir(parents=True)
    (tmp_path / "validation-wake" / "report.json").write_text("{}")
    (tmp_path / "validation-mine").mkdir()          # not a report: kept
    runio.clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "validation-mine"]


def test_config_json_records_the_version_and_stays_a_config_file(tmp_path):
    cfg = Config(seed=7)
    runio.save_config(tmp_path / "config.json", cfg)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["dfc_analog_version"] == __version__
    assert set(data) - set(cfg.to_dict()) <= {"dfc_analog_version", "git_commit"}
    assert Config.from_dict(load_config_file(tmp_path / "config.json")) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "threads"}   # a run of before
    assert Config.from_dict(old) == cfg
