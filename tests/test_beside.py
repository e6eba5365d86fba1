"""wantrace.work.beside: a function run in a forked child gives the value it gives in place, an error is the
function's own, a dead child costs a rerun and not a hang, and the whole generation is the same report with the
VAE traced beside the DiT or in line."""

import os
import signal
import time
from pathlib import Path

import pytest

from wantrace.timing.predictor import Predictor
from wantrace.work import beside, generation
from wantrace.work.beside import Beside

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def forks():
    """Skip where no child can be forked now: no fork, one core, or another thread left running by an earlier
    test in this process (conftest keeps tqdm's monitor thread, the one seen, from starting)."""
    if not beside.usable():
        import threading
        pytest.skip(f"no fork here: {[t.name for t in threading.enumerate()]}")


class Boom(ValueError):
    pass


def _pid_and_value() -> tuple[int, list[int]]:
    return os.getpid(), [n * n for n in range(1000)]


def _raise() -> None:
    raise Boom("the function's own message")


def test_the_child_computes_the_value(forks):
    with Beside(_pid_and_value) as job:
        assert job.forked
        pid, value = job.result()
    assert pid != os.getpid()  # it ran in the child ...
    assert value == [n * n for n in range(1000)]  # ... and came back whole
    assert job.result() is job.result()  # asked twice: once


def test_a_failing_child_means_the_function_runs_here_and_raises_its_own_error(forks):
    calls = []

    def fn():
        calls.append(os.getpid())
        return _raise()

    with Beside(fn) as job, pytest.raises(Boom, match="the function's own message"):
        job.result()
    assert calls == [os.getpid()]  # the parent's run: the child's append is in the child's memory


def test_a_killed_child_means_the_function_runs_here(forks):
    def slow():
        time.sleep(30)
        return os.getpid()

    start = time.perf_counter()
    job = Beside(slow)
    os.kill(job._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    job._fn = os.getpid  # the rerun here (slow would sleep)
    assert job.result() == os.getpid()
    assert time.perf_counter() - start < 10


def test_leaving_stops_a_child_whose_result_was_not_taken(forks):
    with pytest.raises(RuntimeError), Beside(lambda: time.sleep(30)) as job:
        process = job._process
        raise RuntimeError("this process's own work failed")
    assert process is not None and not process.is_alive()


def test_jobs_1_runs_in_place(monkeypatch):
    monkeypatch.setenv(beside.JOBS, "1")
    assert not beside.usable()
    with Beside(_pid_and_value) as job:
        assert not job.forked
        assert job.result()[0] == os.getpid()


def test_the_whole_generation_is_the_same_with_the_vae_beside_or_in_line(forks, monkeypatch):
    """i2v: the VAE's encode and decode traced in the child, beside the DiT; CLIP, umT5, the sampler here."""
    started = []

    class Spy(Beside):
        def __init__(self, fn):
            super().__init__(fn)
            started.append(self.forked)

    monkeypatch.setattr(generation, "Beside", Spy)
    config = ROOT / "models/wan2.1-tiny-i2v/config.json"
    with_child = generation.analyze_generation(config, "ci-tiny", timing=Predictor("h200")).to_json()
    monkeypatch.setenv(beside.JOBS, "1")
    in_line = generation.analyze_generation(config, "ci-tiny", timing=Predictor("h200")).to_json()
    assert started == [True, False]
    assert '"vae.encode"' in with_child and '"vae.decode"' in with_child
    assert with_child == in_line


def test_an_analysis_leaves_no_thread_behind(monkeypatch):
    """torch.fx's Interpreter.run opens a tqdm bar; where tqdm is installed its first bar starts a monitor thread,
    after which no later analysis in the process could fork. The cost interpreter runs without one."""
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 10)  # tqdm's default (conftest turns it off)
    monkeypatch.setattr(tqdm.tqdm, "monitor", None)
    import threading

    before = set(threading.enumerate())
    generation.analyze_generation(ROOT / "models/wan2.1-tiny-t2v/config.json", "ci-tiny")
    assert set(threading.enumerate()) <= before


def _double(value: int) -> tuple[int, int]:
    return os.getpid(), 2 * value


def test_ahead_prepares_in_the_child_then_computes_what_it_is_sent(forks):
    with beside.Ahead(lambda: None, _double) as job:
        assert job.forked
        pid, value = job.result(21)
    assert (pid != os.getpid(), value) == (True, 42)


def test_ahead_runs_here_when_the_value_cannot_travel_or_the_child_fails(forks):
    with beside.Ahead(lambda: None, lambda value: (os.getpid(), value())) as job:
        assert job.result(lambda: 7) == (os.getpid(), 7)  # a lambda does not pickle
    with beside.Ahead(_raise, _double) as job:  # prepare fails in the child
        assert job.result(1) == (os.getpid(), 2)


def test_a_sweep_drawn_by_the_plotter_child_is_the_one_drawn_here(tmp_path, monkeypatch):
    """The PNGs, byte for byte, drawn in the child that imported matplotlib during the sweep, or here."""
    from click.testing import CliRunner

    from wantrace.cli import main

    args = ["sweep", "--config", str(ROOT / "models/wan2.1-tiny-t2v/config.json"), "--frames", "5,9",
            "--size", "256x256,128x256"]
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")]).exit_code == 0
    monkeypatch.setenv(beside.JOBS, "1")
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")]).exit_code == 0
    for name in ("flops_vs_tokens.png", "self_attention_share.png", "sweep.json", "summary.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
