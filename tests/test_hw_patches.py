# amaranth: UnusedElaboratable=no
"""The activation memory's patches against the window stream's definition
(:func:`tfl2rtl.hw.window.window_beats`), with random stalls and backpressure."""

import random

import numpy as np
import pytest
from amaranth.hdl import Assert, Module, Signal
from amaranth.lib.memory import Memory

from streams import STALL_MODES, Timing, get, put, simulate
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.patches import ActivationMemory, PatchGeometry, patch_beats
from tfl2rtl.hw.weights import RowMemory

G = PatchGeometry

#: name: (simd, the layers' geometries in order).
CHAINS = {
    "one vector": (2, [G.vector(5)]),
    "3x3 same then 1x1": (2, [G(6, 5, 2, (3, 3), padding=(1, 1, 1, 1), pad_value=-7),
                              G(6, 5, 3)]),
    "stride 2, dilation 2, wide padding": (1, [
        G(7, 6, 3, (3, 2), (2, 1), (2, 2), (2, 1, 3, 0), pad_value=100),
        G(4, 4, 2, (5, 5), (3, 3), padding=(4, 4, 4, 4), pad_value=-128)]),
    "kws-like chain of four": (4, [
        G(9, 4, 1, (4, 3), (2, 2), padding=(1, 1, 2, 1), pad_value=-3),
        G(5, 2, 2, (3, 3), padding=(1, 1, 1, 1), pad_value=5),
        G(5, 2, 2),
        G.vector(20)]),
    "padding past the kernel": (3, [G(2, 3, 1, (1, 2), (1, 1), (1, 1), (3, 2, 3, 2),
                                      pad_value=9),
                                    G(3, 1, 2, (2, 1), (3, 1), padding=(0, 0, 2, 0))]),
    "conv into a vector": (1, [G(3, 3, 2, (2, 2), pad_value=1), G.vector(8)]),
    "depthwise alone": (2, [G(5, 4, 3, (3, 3), (2, 1), padding=(1, 1, 1, 1), pad_value=-9,
                              order="depthwise")]),
    "conv, depthwise, conv, vector": (2, [
        G(4, 4, 1, (3, 3), padding=(1, 1, 1, 1), pad_value=3),
        G(4, 4, 2, (3, 2), (1, 2), (2, 1), (2, 1, 2, 0), pad_value=-2, order="depthwise"),
        G(4, 2, 2, (1, 1)),
        G.vector(16)]),
}


class _SinglePortRows(RowMemory):
    """Rows behind one port as strict as ``SB_SPRAM256KA``'s: a read and a write in one
    cycle fail the simulation, and after a write ``read_data`` is garbage (the row
    written, inverted) until the next read."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=self.width, depth=self.depth, init=[])
        read, write = memory.read_port(domain="comb"), memory.write_port()
        m.d.comb += [read.addr.eq(self.addr), write.addr.eq(self.addr),
                     write.data.eq(self.write_data), write.en.eq(self.write)]
        data = Signal(self.width)
        with m.If(self.read):
            m.d.sync += data.eq(read.data)
        with m.Elif(self.write):
            m.d.sync += data.eq(~self.write_data)
        m.d.comb += [self.read_data.eq(data),
                     Assert(~(self.read & self.write), "a read and a write together")]
        return m


class _SinglePortPlatform:
    """A stand-in platform whose row memories (ROW_MEMORY_HOOK) are
    :class:`_SinglePortRows`."""

    get_row_memory = _SinglePortRows


PLATFORMS = {"memory": None, "single port": _SinglePortPlatform()}


def run(dut, tensors, mode, seed, cycles=None, write_cycles=None, platform=None):
    """Write ``tensors`` (every layer's input, pass after pass) and read every patch."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    beats = np.concatenate([t.reshape(-1, dut.simd) for t in tensors])
    count = sum(g.beats for g in dut.geometries) * (len(tensors) // len(dut.geometries))
    received = []

    async def producer(ctx):
        await put(ctx, dut.i, beats.tolist(), in_timing)

    async def consumer(ctx):
        received.extend(await get(ctx, dut.o, count, out_timing, cycles=cycles))

    simulate(dut, producer, consumer, platform=platform)
    return (np.array([[beat.data[s] for s in range(dut.simd)] for beat in received]
                     ).reshape(-1, dut.simd),
            np.array([beat.pad for beat in received], dtype=bool))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("name", CHAINS)
def test_patches(name, mode, platform):
    """Each region in a row memory of its own: Amaranth's memory, or one as strict as
    a single-port SPRAM (the iCE40's, through ROW_MEMORY_HOOK)."""
    simd, geometries = CHAINS[name]
    dut = ActivationMemory(geometries, simd)
    rng = np.random.default_rng(len(name))
    passes = 2
    tensors = [rng.integers(-128, 128, (g.height, g.width, g.blocks * simd)).astype(np.int8)
               for _ in range(passes) for g in geometries]
    tensors[0].flat[:2] = [-128, 127]
    data, pad = run(dut, tensors, mode, seed=len(name), platform=PLATFORMS[platform])
    expected = [patch_beats(x, g, simd) for x, g in
                zip(tensors, geometries * passes, strict=True)]
    np.testing.assert_array_equal(data, np.concatenate([d for d, _ in expected]))
    np.testing.assert_array_equal(pad, np.concatenate([p for _, p in expected]))


@pytest.mark.parametrize("seed", range(4))
def test_a_region_is_written_again_once_its_last_beat_has_moved_on(seed):
    """The writer, always ready, waits while the region's last beat read still waits for
    the skid buffer under heavy backpressure: a single-port row memory's data would be
    garbage after the write."""
    simd, geometries = CHAINS["one vector"]
    dut = ActivationMemory(geometries, simd)
    rng = np.random.default_rng(seed)
    tensors = [rng.integers(-128, 128, (1, 1, 5 * simd)).astype(np.int8) for _ in range(12)]
    beats = np.concatenate([t.reshape(-1, simd) for t in tensors])
    received = []

    async def producer(ctx):
        await put(ctx, dut.i, beats.tolist(), Timing())

    async def consumer(ctx):
        timing = Timing(random.Random(seed), pause=0.7, longest=6)
        received.extend(await get(ctx, dut.o, len(beats), timing))

    simulate(dut, producer, consumer, platform=PLATFORMS["single port"])
    np.testing.assert_array_equal(
        [[beat.data[s] for s in range(simd)] for beat in received], beats)


@pytest.mark.parametrize("name", ["3x3 same then 1x1", "kws-like chain of four"])
def test_throughput_and_latency(name):
    """Straight through, the first patch beat leaves ``latency`` edges after the input's
    last beat is taken, and every layer's beats then follow one a cycle (its tensor was written
    while the layer before was read)."""
    simd, geometries = CHAINS[name]
    dut = ActivationMemory(geometries, simd)
    rng = np.random.default_rng(3)
    tensors = [rng.integers(-128, 128, (g.height, g.width, g.blocks * simd)).astype(np.int8)
               for g in geometries]
    cycles = []
    run(dut, tensors, "streaming", seed=0, cycles=cycles)
    # put gives a beat a cycle from edge 1: tensor 0's last is taken at edge
    # tensor_beats.
    assert cycles[0] == geometries[0].tensor_beats + dut.latency
    assert list(np.diff(cycles[:geometries[0].beats])) == [1] * (geometries[0].beats - 1)


def test_region_size():
    dut = ActivationMemory([G(6, 5, 2), G(3, 3, 4), G.vector(3)], 1)
    assert (dut.region_beats, dut.regions) == (60, 2)
    assert ActivationMemory([G.vector(7)], 1).regions == 1


@pytest.mark.parametrize("geometries, message", [
    ([], r"^an activation memory needs at least one layer$"),
    ([G(0, 3, 1)], r"^layer 0: every size, kernel, stride and dilation must be at least 1"),
    ([G.vector(2), G(3, 3, 1, padding=(0, -1, 0, 0))], r"^layer 1: negative padding"),
    ([G(3, 3, 1, pad_value=128)], r"^layer 0: pad value 128 is not int8$"),
    ([G(3, 3, 1, order="nchw")], r"^layer 0: unknown order 'nchw'; choose one of conv, "
                                 r"depthwise$"),
    ([G(3, 3, 1, (5, 1))], r"^a 5x1 window \(dilation 1x1\) does not fit the padded 3x3"),
])
def test_rejects(geometries, message):
    with pytest.raises(Tfl2RtlError, match=message):
        ActivationMemory(geometries, 1)
