"""The simulation runner's pieces that need no simulator, and the harness's own stalls."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from conftest import TEST_MODELS, ZOO, long_case
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import DataflowNetwork, plan_network
from tfl2rtl.sim import runner
from tfl2rtl.sim.runner import SimRun, golden_vectors, memory_init_files, simulate_network

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"

YOSYS_MEMORY = """\
module m(clk);
  reg [15:0] weights [3:0];
  initial begin
    weights[0] = 16'h0102;
    weights[1] = 16'hffff;
    weights[3] = 16'h0000;
  end
  reg [7:0] other [1:0];
  initial begin
    other[0] = 8'h01;
    weights[1] = 16'h0001;
  end
endmodule
"""


def test_memory_contents_move_to_readmemh_files(tmp_path):
    verilog = memory_init_files(YOSYS_MEMORY, tmp_path)
    path = tmp_path / "memory_0.hex"
    assert f'  initial $readmemh("{path}", weights);\n' in verilog
    # A gap in the addresses gets an @address line.
    assert path.read_text() == "@0\n0102\nffff\n@3\n0000\n"
    # A block that initialises two memories is left alone.
    assert "other[0] = 8'h01;" in verilog and not (tmp_path / "memory_1.hex").exists()


def test_beats_are_little_endian_lanes():
    vectors = np.array([[1, 2, 3, 4], [-1, -2, 5, 6]], dtype=np.int8)
    beats = runner._beats(vectors, 2)
    assert [hex(b) for b in beats] == ["0x201", "0x403", "0xfeff", "0x605"]
    np.testing.assert_array_equal(runner._unbeats(beats.tolist(), 2, 8).view(np.int8),
                                  vectors.reshape(-1))


def test_int16_beats_are_little_endian_lanes():
    vectors = np.array([[1, -2, 0x1234, -32768]], dtype=np.int16)
    beats = runner._beats(vectors, 2)
    assert [hex(b) for b in beats] == ["0xfffe0001", "0x80001234"]
    np.testing.assert_array_equal(runner._unbeats(beats.tolist(), 2, 16).view(np.int16),
                                  vectors.reshape(-1))


def test_sim_run_numbers():
    run = SimRun(outputs=np.zeros((4, 1)), cycles=100, first_latency=10,
                 intervals=[30, 20, 20], mismatches=0, cycles_simulated=1000,
                 wall_seconds=0.5)
    assert run.cycles_per_inference == 25
    assert run.initiation_interval == 20
    assert run.cycles_per_second == 2000


def test_rejects_inputs_of_the_wrong_shape(tmp_path):
    network = DataflowNetwork(plan_network(load(HELLO_WORLD)))
    with pytest.raises(Tfl2RtlError, match=r"^inputs of shape \(3, 2\) and dtype int8: "
                                           r"expected 8-bit vectors of 1 elements"):
        simulate_network(network, np.zeros((3, 2), np.int8), np.zeros((3, 1), np.int8),
                         tmp_path)
    with pytest.raises(Tfl2RtlError, match=r"^stall and backpressure are probabilities"):
        simulate_network(network, np.zeros((3, 1), np.int8), np.zeros((3, 1), np.int8),
                         tmp_path, stall=1.0)
    Fragment.get(network, None)  # refused before its Verilog was made: use it up here


def test_harness_stalls_and_backpressure(tmp_path):
    # One vector per cycle (every layer fully parallel): only the harness's idle cycles
    # and backpressure slow the stream down, each with probability one half.  The
    # expected outputs have one wrong element, which both runs must report.
    graph = load(HELLO_WORLD)
    network = DataflowNetwork(plan_network(graph, {0: (16, 1), 1: (16, 16), 2: (1, 16)}))
    inputs = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    expected = golden_vectors(graph, inputs)
    wrong = expected.copy()
    wrong[5, 0] += 1
    runs = simulate_network(network, inputs, wrong, tmp_path, seed=3, stall=0.5,
                            backpressure=0.5, check=False)
    streaming, stalled = runs["streaming"], runs["random_stalls"]
    assert streaming.initiation_interval == 1
    assert streaming.cycles == len(inputs) + streaming.first_latency
    # Each side moves a beat in half of the cycles on average: about two per vector.
    assert stalled.cycles > 1.8 * len(inputs) + streaming.first_latency
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.mismatches == 1
    with pytest.raises(Tfl2RtlError, match=r"^streaming: 1 outputs differ from the golden "
                                           r"model; the first is element 0 of vector 5: "
                                           rf"{expected[5, 0]}, expected {wrong[5, 0]}$"):
        runner._check("streaming", streaming, wrong)


def _vcd_transfers(path, scope: str, data: str, valid: str, ready: str, clock: str) -> list:
    """The values of ``data`` at the rising edges of ``clock`` where ``valid`` and ``ready``
    are both 1, read from the VCD file ``path`` (signals of the module instance
    ``scope``)."""
    codes, scopes, values, transfers = {}, [], {}, []
    wanted = {data, valid, ready, clock}
    with open(path) as vcd:
        lines = iter(vcd)
        for line in lines:
            words = line.split()
            if words[:1] == ["$scope"]:
                scopes.append(words[2])
            elif words[:1] == ["$upscope"]:
                scopes.pop()
            elif words[:1] == ["$var"] and scopes[-1:] == [scope] and words[4] in wanted:
                codes.setdefault(words[3], words[4])
            elif words[:1] == ["$enddefinitions"]:
                break
        for line in lines:
            line = line.strip()
            if not line or line[0] in "#$":
                continue
            if line[0] == "b":
                value, code = line[1:].split()
            else:
                value, code = line[0], line[1:]
            name = codes.get(code)
            if name is None:
                continue
            if name == clock and value == "1" and values.get(valid) == values.get(ready) == 1:
                transfers.append(values.get(data))
            values[name] = int(value, 2)
    return transfers


def test_waves_record_the_designs_output_stream(tmp_path):
    # The waveform holds the design's own m_axis: the beats taken at rising clock edges
    # are the outputs, first of the streaming run and then of the stalled one.  (One
    # multiplier a layer: the traced build of a wider folding took 70 s.)
    graph = load(HELLO_WORLD)
    network = DataflowNetwork(plan_network(graph))
    inputs = np.array([[-128], [0], [77], [127]], dtype=np.int8)
    expected = golden_vectors(graph, inputs)
    waves = tmp_path / "waves" / "run.vcd"
    simulate_network(network, inputs, expected, tmp_path / "build", waves=waves)
    beats = _vcd_transfers(waves, "dut", "m_axis_tdata", "m_axis_tvalid", "m_axis_tready",
                           "clk")
    outputs = np.array(beats, dtype=np.uint8).view(np.int8).reshape(2, *expected.shape)
    np.testing.assert_array_equal(outputs[0], expected)
    np.testing.assert_array_equal(outputs[1], expected)


def test_waves_need_a_vcd_file_name(tmp_path):
    network = DataflowNetwork(plan_network(load(HELLO_WORLD)))
    with pytest.raises(Tfl2RtlError, match=r"^--waves run.fst: the waveform file must end "
                                           r"in .vcd$"):
        simulate_network(network, np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int8),
                         tmp_path, waves=tmp_path / "run.fst")
    Fragment.get(network, None)


@pytest.mark.parametrize("name", ["mlp_float_io.tflite", long_case("cnn_float_io.tflite"),
                                  long_case("nchw_float_io.tflite")])
def test_simulate_a_model_with_float_edges(name, tmp_path):
    """simulate() on float32 inputs: the RTL streams int8 (NHWC: the NCHW model's
    QUANTIZE and TRANSPOSE run on the host), the host's DEQUANTIZE of its outputs equals
    the golden model's float32 outputs bit for bit, in both runs."""
    import json

    from tfl2rtl.api import simulate

    graph = load(TEST_MODELS / name)
    shape = graph.tensors[graph.inputs[0]].shape
    x = np.random.default_rng(4).uniform(-2, 2, (5, *shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    report = simulate(graph, inputs=10, input_files=[tmp_path / "x.npy"])
    assert report.inputs == 15 and report.mismatches == 0
    outputs = graph.tensors[graph.outputs[0]].size
    assert report.extra["float_outputs_compared"] == 2 * 15 * outputs
    edges = report.extra["host_edges"]
    assert edges["input"]["host"][0] == "QUANTIZE" and edges["output"]["host"] == ["DEQUANTIZE"]
    assert json.loads(json.dumps(report.to_json()))["float_outputs_compared"] == 2 * 15 * outputs
