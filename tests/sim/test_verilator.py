"""Verilator + cocotb machinery (sim/verilator.py, sim/cocotb_util.py) on a real design.

The design is a small Amaranth streaming multiply-accumulate with valid/ready
in and out (a two-stage pipeline with backpressure); its benches are in
``tests/sim/mac_tb.py``. Builds dominate the run time, so one build is shared
by the module (``mac_build``), plus one FST-tracing build for the waves test.
"""

# No `from __future__ import annotations`: Amaranth reads the Component's
# member annotations as objects.
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cocotb_tools.runner")

from amaranth.back import verilog  # noqa: E402
from amaranth.hdl import Module, Signal, signed  # noqa: E402
from amaranth.lib import data, stream, wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from sigprop_fpga import toolchain  # noqa: E402
from sigprop_fpga.sim import verilator as V  # noqa: E402

TB_DIR = Path(__file__).parent
WIDTH = 8
ACC_WIDTH = 32


class MAC(wiring.Component):
    """Streaming dot product: one signed output per vector (ends at ``last``).

    Stage 1 registers ``a * b``; stage 2 accumulates and, on ``last``, loads
    the output register (held while ``o.ready`` is low).
    """

    i: In(stream.Signature(data.StructLayout(
        {"a": signed(WIDTH), "b": signed(WIDTH), "last": 1})))
    o: Out(stream.Signature(signed(ACC_WIDTH)))

    def elaborate(self, platform):
        m = Module()
        p = Signal(signed(2 * WIDTH))
        p_valid = Signal()
        p_last = Signal()
        acc = Signal(signed(ACC_WIDTH))
        out_free = ~self.o.valid | self.o.ready
        take = p_valid & (out_free | ~p_last)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            with m.If(p_last):
                m.d.sync += [self.o.payload.eq(acc + p), self.o.valid.eq(1), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(acc + p)
        load = ~p_valid | take
        m.d.comb += self.i.ready.eq(load)
        with m.If(load):
            m.d.sync += [p_valid.eq(self.i.valid),
                         p.eq(self.i.payload.a * self.i.payload.b),
                         p_last.eq(self.i.payload.last)]
        return m


def mac_model(vectors: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """NumPy model: dot products wrapped to ACC_WIDTH bits, signed."""
    out = []
    for a, b in vectors:
        total = int(np.dot(a.astype(np.int64), b.astype(np.int64)))
        total &= (1 << ACC_WIDTH) - 1
        out.append(total - (1 << ACC_WIDTH) if total >> (ACC_WIDTH - 1) else total)
    return out


def random_vectors(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (WIDTH - 1)), 1 << (WIDTH - 1)
    vectors = []
    for _ in range(n):
        length = int(rng.integers(1, 9))
        vectors.append((rng.integers(lo, hi, length), rng.integers(lo, hi, length)))
    return vectors


def mac_config(vectors, expected, **extra) -> dict:
    return {"width": WIDTH, "vectors": [[a.tolist(), b.tolist()] for a, b in vectors],
            "expected": [int(e) for e in expected], **extra}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verilator")


@pytest.fixture(scope="module")
def mac_verilog(workdir) -> Path:
    path = workdir / "mac.v"
    path.write_text(verilog.convert(MAC(), name="mac"))
    return path


@pytest.fixture(scope="module")
def cache_root(workdir, tmp_path_factory) -> Path:
    """Build cache; shared by pytest-xdist workers (build() locks, so one builds)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.getbasetemp().parent / "verilator-cache"
    return workdir / "cache"


@pytest.fixture(scope="module")
def mac_builds(cache_root, mac_verilog):
    """(first build, second build of the same inputs, binary mtime after the first)."""
    root = cache_root
    first = V.build(mac_verilog, "mac", root)
    mtime = first.binary.stat().st_mtime_ns
    second = V.build(mac_verilog, "mac", root)
    print(f"\nverilator {first.verilator_version}: first build {first.build_time_s:.2f} s, "
          f"cached build {second.build_time_s:.3f} s")
    return first, second, mtime


@pytest.fixture(scope="module")
def mac_build(mac_builds) -> V.BuildInfo:
    return mac_builds[0]


def test_build_then_cached(mac_builds, cache_root):
    first, second, mtime = mac_builds
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # else another worker may have built it
        assert not first.cached
    assert second.cached
    assert first.hash == second.hash and first.path == second.path
    assert first.path.parent == cache_root and first.path.name == first.hash
    assert second.binary.stat().st_mtime_ns == mtime, "cached build rebuilt the binary"
    assert second.build_time_s < 5
    assert (first.path / V.BUILD_INFO_FILE).is_file()
    # no temporary build folders left behind
    # this build left no temporary folder (other workers may be building other designs here)
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(f".tmp-{first.hash}")]
    major, minor = toolchain.verilator_version()
    assert first.verilator_version == f"{major}.{minor:03d}"


def test_build_hash_covers_inputs(mac_verilog):
    text = mac_verilog.read_text()
    base = V.build_hash(text, "mac")
    assert V.build_hash(text, "mac") == base
    assert V.build_hash(text + "\n// changed\n", "mac") != base
    assert V.build_hash(text, "other") != base
    assert V.build_hash(text, "mac", waves=True) != base
    assert V.build_hash(text, "mac", params={"N": 3}) != base
    assert V.build_hash(text, "mac", defines={"X": 1}) != base
    assert V.build_hash(text, "mac", extra_args=["--threads", "2"]) != base
    vlt = {"w.vlt": "`verilator_config\nlint_off -rule WIDTHEXPAND\n"}
    assert V.build_hash(text, "mac", extra_sources=vlt) != base
    assert V.build_hash(text, "mac", extra_sources={"w.vlt": vlt["w.vlt"] + "\n"}) != \
        V.build_hash(text, "mac", extra_sources=vlt)


def test_stream_mac_bit_exact(mac_build, tmp_path):
    vectors = random_vectors(1000, seed=1)
    expected = mac_model(vectors)
    res = V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="stream_mac", run_dir=tmp_path,
                config=mac_config(vectors, expected, ready_probability=0.7, seed=3),
                timeout_s=120)
    assert res.ok, res.messages
    assert (res.passed, res.failed) == (1, 0)
    out = res.data["stream_mac"]
    assert np.array_equal(np.array(out["outputs"], dtype=np.int64), np.array(expected))
    assert out["beats"] == sum(len(a) for a, _ in vectors)
    assert out["cycles"] >= out["beats"]  # one beat per cycle at most
    assert res.sim_time_ns > 0 and res.wall_time_s > 0
    assert res.test("stream_mac").status == "passed"


def test_planted_mismatch_fails(mac_build, tmp_path):
    vectors = random_vectors(200, seed=2)
    expected = mac_model(vectors)
    planted = list(expected)
    planted[137] += 1
    res = V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="stream_mac", run_dir=tmp_path,
                config=mac_config(vectors, planted), timeout_s=120)
    assert (res.passed, res.failed) == (0, 1)
    assert not res.ok
    msg = res.messages["stream_mac"]
    assert "first mismatch at vector 137" in msg
    assert f"expected {planted[137]}, got {expected[137]}" in msg
    assert "(1 mismatches)" in msg
    # the bench wrote its data before failing
    assert res.data["stream_mac"]["mismatches"] == 1


def test_helpers_exact_timing(mac_build, tmp_path):
    res = V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="helpers", run_dir=tmp_path,
                timeout_s=60)
    assert res.ok, res.messages
    assert res.data["helpers"] == {"ok": True}


def test_free_run_speed(mac_build, tmp_path):
    n = 1_000_000
    res = V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="free_run", run_dir=tmp_path,
                config={"width": WIDTH, "free_cycles": n, "slow_cycles": 100_000},
                timeout_s=120)
    assert res.ok, res.messages
    fast, slow = res.data["free_run"]["fast"], res.data["free_run"]["slow_clockcycles"]
    assert fast["cycles"] == n
    print(f"\nfree-running: {fast['sim_cycles_per_second']:.3g} simulated cycles/s "
          f"with clock_cycles({n}) vs {slow['sim_cycles_per_second']:.3g} with cocotb "
          f"ClockCycles (per-edge Python)")
    assert fast["sim_cycles_per_second"] > slow["sim_cycles_per_second"]


def test_waves_fst(cache_root, mac_verilog, mac_build, tmp_path):
    built = V.build(mac_verilog, "mac", cache_root, waves=True)
    assert built.waves and built.hash != mac_build.hash
    with pytest.raises(ValueError, match="waves=True"):
        V.run(mac_build, "mac_tb", test_dir=TB_DIR, waves_file=tmp_path / "x.fst")
    vectors = random_vectors(20, seed=4)
    fst = tmp_path / "waves" / "mac.fst"
    res = V.run(built, "mac_tb", test_dir=TB_DIR, testcase="stream_mac", run_dir=tmp_path,
                config=mac_config(vectors, mac_model(vectors)), waves_file=fst, timeout_s=120)
    assert res.ok, res.messages
    assert res.waves_file == fst and fst.stat().st_size > 0


def test_crash_raises(mac_build, tmp_path):
    with pytest.raises(V.SimulationError, match="no results file"):
        V.run(mac_build, "crash_tb", test_dir=TB_DIR, run_dir=tmp_path, timeout_s=60)


def test_timeout_raises(mac_build, tmp_path):
    start = time.perf_counter()
    with pytest.raises(V.SimulationTimeout, match="killed after"):
        V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="free_run", run_dir=tmp_path,
              config={"free_cycles": 10**12}, timeout_s=2)
    assert time.perf_counter() - start < 30


def test_missing_module(mac_build, tmp_path):
    with pytest.raises(FileNotFoundError):
        V.run(mac_build, "no_such_tb", test_dir=TB_DIR, run_dir=tmp_path)


def test_environment_restored(mac_build, tmp_path):
    before = os.environ.get("PYTEST_CURRENT_TEST")
    path_before = list(sys.path)
    V.run(mac_build, "mac_tb", test_dir=TB_DIR, testcase="helpers", run_dir=tmp_path)
    assert before is not None and os.environ.get("PYTEST_CURRENT_TEST") == before
    assert sys.path == path_before


def test_build_error_keeps_log(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk);\n  wire x = undeclared_signal;\nendmodule\n")
    with pytest.raises(V.BuildError, match="undeclared_signal") as info:
        V.build(bad, "bad", tmp_path / "cache")
    assert ".failed.log" in str(info.value)
    cache = tmp_path / "cache"
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-") or p.is_dir()]


XINIT_V = """
module xinit(input clk, output [31:0] q);
  reg [31:0] r;
  always @(posedge clk) r <= r;
  assign q = r;
endmodule
"""


def test_x_unique_draws_power_up_values_from_the_seed(tmp_path):
    """A register without an initial value starts at a value drawn from the run's seed: the same
    seed gives the same value, another seed another; without the plusargs, Verilator's fixed one.
    (This is what makes the x-unique runs of the generated design in tests/test_rtl.py a check.)"""
    src = tmp_path / "xinit.v"
    src.write_text(XINIT_V)
    info = V.build(src, "xinit", tmp_path / "cache", extra_args=V.X_UNIQUE_ARGS)
    assert "--x-initial unique" in " ".join(V._build_args(False, V.X_UNIQUE_ARGS))
    assert "fast" not in V._build_args(False, V.X_UNIQUE_ARGS)

    def q(*plusargs):
        res = V.run(info, "xinit_tb", test_dir=TB_DIR, run_dir=tmp_path / f"run{len(list(tmp_path.iterdir()))}",
                    plusargs=plusargs)
        assert res.failed == 0
        return res.data["xinit"]["q"]

    a, b, a2, fixed = q(*V.x_random_plusargs(1)), q(*V.x_random_plusargs(2)), q(*V.x_random_plusargs(1)), q()
    assert a == a2 and a != b and fixed == 0
    with pytest.raises(ValueError):
        V.x_random_plusargs(0)
    with pytest.raises(TypeError):
        V.x_random_plusargs("1")
