"""Atomic writes and output folders: nothing the command did not create is deleted or replaced, symlinks and
devices are written through or refused, modes follow the umask, and a folder swap is never half done."""
import os
import stat

import pytest

import au_agent_cli
from au_core import atomic
from au_core.errors import AUAgentError


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path, umask_022):
    atomic.write_text(tmp_path / "new.txt", "a")
    assert mode(tmp_path / "new.txt") == 0o644
    (tmp_path / "script.sh").write_text("#!/bin/sh\n")
    (tmp_path / "script.sh").chmod(0o755)
    atomic.write_text(tmp_path / "script.sh", "#!/bin/sh\necho\n")
    assert mode(tmp_path / "script.sh") == 0o755
    with atomic.staged_dir(tmp_path / "out", command="test") as stage:
        (stage / "f").write_text("x")
    assert mode(tmp_path / "out") == 0o755 and mode(tmp_path / "out" / "f") == 0o644


def test_symlinks_and_devices_are_written_through(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    (tmp_path / "link.txt").symlink_to(target)
    atomic.write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and target.read_text() == "new"
    atomic.write_text(os.devnull, "discarded")  # not replaced by a regular file
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_folder_swap_refuses_what_the_command_did_not_write(tmp_path):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "keep.py").write_text("precious")
    with pytest.raises(AUAgentError, match="not empty and not an output of au-agent prepare-data"):
        with atomic.staged_dir(mine, command="prepare-data"):
            pass
    (tmp_path / "file.txt").write_text("precious")
    with pytest.raises(AUAgentError, match="exists and is not a folder"):
        with atomic.staged_dir(tmp_path / "file.txt", command="prepare-data"):
            pass
    with pytest.raises(AUAgentError, match="exists and is not a folder"):
        with atomic.staged_dir(os.devnull, command="prepare-data"):
            pass
    assert (mine / "keep.py").read_text() == "precious" and (tmp_path / "file.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "project"]  # no staging folder left


def test_folder_swap_replaces_its_own_output_through_a_symlink(tmp_path):
    with atomic.staged_dir(tmp_path / "real", command="prepare-data") as stage:
        (stage / "a").write_text("1")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with atomic.staged_dir(tmp_path / "link", command="prepare-data") as stage:
        (stage / "b").write_text("2")
    assert (tmp_path / "link").is_symlink() and sorted(os.listdir(tmp_path / "real")) == [atomic.MARKER, "b"]


def test_two_rename_swap_is_finished_or_rolled_back_by_the_next_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic.staged_dir(out, command="c") as stage:
        (stage / "v").write_text("old")
    aside = tmp_path / ".out.au_agent_old"
    os.rename(out, aside)  # killed between the two renames: no folder at the output path
    atomic.recover_swap(out)
    assert (out / "v").read_text() == "old" and not aside.exists()
    monkeypatch.setattr(atomic, "_exchange_supported", False)
    with atomic.staged_dir(out, command="c") as stage:
        (stage / "v").write_text("new")
    assert (out / "v").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = atomic._HOST
    stale = tmp_path / f".x.npy.{host}-{pid}-abc.tmp"
    live = tmp_path / f".y.npy.{host}-{os.getpid()}-abc.tmp"
    foreign = tmp_path / f".z.npy.{'0' * 8 if host != '0' * 8 else '1' * 8}-{pid}-abc.tmp"  # another host's
    user = tmp_path / ".notes.tmp"
    for p in (stale, live, foreign, user):
        p.write_text("x")
    assert atomic.remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, foreign, user))


def test_a_killed_process_not_yet_waited_for_is_dead(tmp_path):
    """A SIGKILLed run whose parent has not reaped it yet (a zombie) has released its locks: a run that takes
    over (a second patch-affectgpt waiting on the checkout) removes what it left."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(["sleep", "60"])
    temp = tmp_path / f".x.py.{atomic._HOST}-{proc.pid}-abc.tmp"
    temp.write_text("x")
    assert atomic.remove_stale_temps(tmp_path) == 0  # running
    proc.send_signal(signal.SIGKILL)
    for _ in range(100):  # until the kernel has made it a zombie
        if atomic.remove_stale_temps(tmp_path):
            break
        time.sleep(0.05)
    assert not temp.exists() and proc.poll() == -signal.SIGKILL


@pytest.mark.parametrize("out", [".", "file", "/dev/null"])
def test_prepare_data_never_deletes_or_replaces_what_it_did_not_create(samples, tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("precious")
    (tmp_path / "src.py").write_text("precious")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc = au_agent_cli.main(["-q", "prepare-data", "--mer-factory-output", str(samples / "mer_factory"),
                            "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and ("not empty" in err[0] or "not a folder" in err[0]), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_dev_stdout_is_written_through_the_process_descriptor(tmp_path, into):
    import subprocess
    import sys

    code = ("from au_core import atomic; print('before', flush=False); "
            "atomic.write_text('/dev/stdout', 'written\\n'); print('after')")
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if into == "pipe":
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout
    else:
        with open(tmp_path / "out.txt", "w") as f:
            subprocess.run([sys.executable, "-c", code], stdout=f, env=env, check=True)
        out = (tmp_path / "out.txt").read_text()
        assert stat.S_ISREG(os.lstat(tmp_path / "out.txt").st_mode)
    assert out == "before\nwritten\nafter\n"
