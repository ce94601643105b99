"""The command line, run as a user runs it: a real process, real files."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ERROR_MODELS, TEST_MODELS, ZOO, long_case
from tfl2rtl.api import load

TFL2RTL = str(Path(sys.executable).parent / "tfl2rtl")


def cli(*args, check_code=None):
    proc = subprocess.run([TFL2RTL, *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    return proc


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfl2rtl: error:")]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0]
    assert proc.stdout == ""


def test_inspect_text_and_json(zoo):
    model = zoo / "tflite_micro" / "micro_speech_quantized.tflite"
    text = cli("inspect", model, check_code=0).stdout
    assert "DEPTHWISE_CONV_2D" in text and "multiplier" in text and "int8 (int8 I/O)" in text
    info = json.loads(cli("inspect", model, "--json", check_code=0).stdout)
    assert [layer["op"] for layer in info["layers"]] == [
        "RESHAPE", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"]


def test_verify_json(zoo):
    proc = cli("verify", zoo / "mlperf_tiny" / "ad01_int8.tflite", "--samples", 20, "--json",
               check_code=0)
    data = json.loads(proc.stdout)
    assert {k: data[k] for k in ("profile", "samples", "tensors_compared", "mismatches")} == {
        "profile": "tflm", "samples": 20, "tensors_compared": 220, "mismatches": 0}


def test_verify_with_input_files(zoo, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.arange(-128, 128, dtype=np.int8).reshape(256, 1))
    proc = cli("verify", zoo / "tflite_micro" / "hello_world_int8.tflite", "--samples", 0,
               "--input", x, check_code=0)
    assert proc.stdout.startswith("OK:") and "256 inputs" in proc.stdout


def test_run_and_dump(zoo, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.array([[42]], np.int8))
    dump = tmp_path / "dump"
    proc = cli("run", zoo / "tflite_micro" / "hello_world_int8.tflite", "--input", x,
               "--dump", dump, check_code=0)
    assert "profile: tflm" in proc.stdout
    files = sorted(p.name for p in dump.iterdir() if not p.name.startswith("."))
    assert len(files) == 5 and "index.txt" in files
    final = np.load(dump / files[-2])
    assert final.dtype == np.int8 and final.shape == (1, 1)
    assert f"{final.reshape(-1)}" in proc.stdout


def test_failed_run_leaves_dump_folder_untouched(zoo, tmp_path):
    from tfl2rtl.output import staged_directory

    dump = tmp_path / "dump"
    with staged_directory(dump) as tmp:  # an earlier dump: tfl2rtl's, which it may replace
        (tmp / "keep.txt").write_text("previous results")
    before = {p.name: p.read_bytes() for p in dump.iterdir()}
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1, 2]], np.int8))
    proc = cli("run", zoo / "tflite_micro" / "hello_world_int8.tflite", "--input", x,
               "--dump", dump)
    assert_one_line_error(proc, "holds 2 inputs; run takes one")
    assert {p.name: p.read_bytes() for p in dump.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", sorted(ERROR_MODELS))
def test_non_integer_models(name):
    assert_one_line_error(cli("verify", TEST_MODELS / name), ERROR_MODELS[name],
                          "TFLITE_BUILTINS_INT8")


@pytest.mark.parametrize("name,position,op", [
    ("lstm_int8.tflite", 1, "UNIDIRECTIONAL_SEQUENCE_LSTM"), ("svdf_int8.tflite", 0, "SVDF")])
def test_int16_state_ops_are_refused_by_name(name, position, op):
    for verb in ("inspect", "verify"):
        proc = cli(verb, TEST_MODELS / name)
        assert_one_line_error(proc, f"operator {position} ({op}) is not supported",
                              "int16 tensors")
        assert "16x8" not in proc.stderr and "needs integers" not in proc.stderr


@pytest.mark.parametrize("name,profiles", [
    ("int16x8.tflite", ("tflm", "litert-ref", "litert")),
    ("uint8_legacy.tflite", ("litert-ref", "litert"))])
def test_legacy_uint8_and_16x8_verify_under_each_profile_that_applies(name, profiles):
    model = TEST_MODELS / name
    default = cli("verify", model, "--samples", 3, "--json", check_code=0)
    assert json.loads(default.stdout)["profile"] == profiles[0]
    for profile in profiles:
        report = json.loads(cli("verify", model, "--samples", 3, "--profile", profile,
                                "--json", check_code=0).stdout)
        assert report["profile"] == profile and report["mismatches"] == 0
        assert report["tensors_compared"] > 0


def test_tflm_is_refused_for_a_legacy_uint8_model():
    for verb in ("verify", "inspect"):
        proc = cli(verb, TEST_MODELS / "uint8_legacy.tflite", "--profile", "tflm")
        assert_one_line_error(proc, "the tflm profile does not apply", "legacy uint8",
                              "TensorFlow Lite Micro has no legacy uint8 kernels",
                              "use --profile litert or litert-ref")


def int16_mean_model(tmp_path) -> Path:
    """A written 16x8 model: CONV_2D, then MEAN over height and width."""
    from test_golden_random import ModeLayers

    from tflite_writer import GraphWriter

    g = GraphWriter("16x8 MEAN")
    layers = ModeLayers(g, "int16")
    x = g.tensor((1, 4, 4, 2), "int16", 1 / 4096, 0)
    y = layers.conv_2d(x, np.ones((2, 1, 1, 2), int), [0.01, 0.02], [0, 0], (1 / 1024, 0))
    path = tmp_path / "mean16.tflite"
    path.write_bytes(g.finish([x], [layers.mean(y, [1, 2], (1 / 1024, 0), keep_dims=False)]))
    return path


def test_a_16x8_mean_through_generate_and_sim(tmp_path):
    model = int16_mean_model(tmp_path)
    cli("generate", model, "-o", tmp_path / "out", check_code=0)
    report = json.loads(cli("sim", model, "--inputs", "6", "--json", check_code=0).stdout)
    assert report["inputs"] == 6 and report["mismatches"] == 0


def test_a_16x8_op_without_int16_hardware_is_refused_in_one_line(tmp_path, monkeypatch):
    # Every op a 16x8 model can hold has int16 hardware now; the refusal of one that
    # had none, with MEAN's taken away.
    from tfl2rtl import api
    from tfl2rtl.errors import Tfl2RtlError
    from tfl2rtl.hw.stages import MeanStage

    monkeypatch.setattr(MeanStage, "int16", False)
    with pytest.raises(Tfl2RtlError, match=r"^node 1 \(MEAN\) of a 16x8 model has no "
                                           r"hardware for int16 activations yet; built "
                                           r"for 16x8: .*LEAKY_RELU"):
        api.generate(int16_mean_model(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", [long_case("int16x8.tflite"), long_case("cnn_int16x8.tflite"),
                                  "ops_int16x8.tflite"])
def test_16x8_models_through_generate_and_sim(name, tmp_path):
    """int16x8: QUANTIZE (float32 -> int16, on the host), CONV_2D, MAX_POOL_2D, RESHAPE,
    FULLY_CONNECTED, DEQUANTIZE; cnn_int16x8: CONV_2D, DEPTHWISE_CONV_2D, ADD, an int16
    QUANTIZE, CONCATENATION, AVERAGE_POOL_2D, FULLY_CONNECTED, SOFTMAX; ops_int16x8: every
    16x8 op, LEAKY_RELU and PAD among them, float32 edges.  int16 streams,
    16x8 products, the int64 requantization and the int16 softmax, bit-exact in Verilator
    under stalls.  (The suite runs ops_int16x8, the long runs all three: 35-50 s each.)"""
    model = TEST_MODELS / name
    cli("generate", model, "-o", tmp_path / "out", check_code=0)
    top = (tmp_path / "out" / "tfl2rtl_top.v").read_text()
    assert re.search(r"input \[15:0\] s_axis_tdata", top)
    report = json.loads(cli("sim", model, "--inputs", "6", "--json", check_code=0).stdout)
    assert report["inputs"] == 6 and report["mismatches"] == 0


def _inspect_line(text: str, layer: int, start: str) -> str:
    """The line of ``layer``'s block in inspect's text that starts with ``start``."""
    block = text.split(f"[{layer:>2}] ")[1].split("\n[")[0]
    return next(line.strip() for line in block.splitlines() if line.strip().startswith(start))


@pytest.mark.parametrize("name", ["uint8_legacy.tflite", "mlp_uint8_legacy.tflite"])
def test_inspect_shows_s1_to_z3_m_and_the_shift_of_the_uint8_mlp(name):
    """The seed's question, "what is S3": for each layer of a legacy uint8 MLP (the
    writer's small one and the converter's 784-512-100-10),
    inspect prints the input, weight and output scales (S1, S2, S3), the zero points (Z1,
    Z2, Z3), M = S1 * S2 / S3 and its integer multiplier and shift; read back from the
    text and the JSON, and checked against the file's own tensors."""
    import re

    from tfl2rtl.fixedpoint import quantize_multiplier
    from tfl2rtl.tflite_reader import read_model

    model_path = TEST_MODELS / name
    model = read_model(model_path)
    text = cli("inspect", model_path, check_code=0).stdout
    info = json.loads(cli("inspect", model_path, "--json", check_code=0).stdout)
    assert info["mode"] == "uint8-legacy (uint8 I/O)" and info["profile"] == "litert-ref"
    layers = [layer for layer in info["layers"] if layer["op"] == "FULLY_CONNECTED"]
    assert len(layers) == 3
    number = r"(-?[\d.e+-]+)"
    for layer in layers:
        op = model.operators[layer["tflite_op_index"]]
        inp, w, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        line = _inspect_line(text, layer["index"], "S1 ")
        found = re.fullmatch(
            rf"S1 {number} S2 {number} S3 {number}; Z1 {number} Z2 {number} Z3 {number}; "
            rf"M = S1\*S2/S3 {number} = {number} \* 2\^\({number} - 31\); "
            r"int32 acc = sum\(\(q1 - Z1\) \* \(q2 - Z2\)\) \+ bias", line)
        assert found, line
        s1, s2, s3, z1, z2, z3, m_real, multiplier, shift = found.groups()
        q = layer["quantization"]
        for key, shown in zip(("S1", "S2", "S3", "M"), (s1, s2, s3, m_real), strict=True):
            assert float(shown) == pytest.approx(q[key], rel=1e-5)
        assert (q["S1"], q["S2"], q["S3"]) == (inp.scale, w.scale, out.scale)
        assert (int(z1), int(z2), int(z3)) == (q["Z1"], q["Z2"], q["Z3"]) == (
            inp.zero_point, w.zero_point, out.zero_point)
        assert w.zero_point != 0
        real = float(np.float64(inp.scale) * np.float64(w.scale) / np.float64(out.scale))
        assert q["M"] == real
        assert (int(multiplier), int(shift)) == (q["multiplier"], q["shift"]) == (
            quantize_multiplier(real))


def test_version_help_and_no_command():
    from importlib.metadata import version

    proc = cli("--version", check_code=0)
    assert proc.stdout.strip() == f"tfl2rtl {version('tfl2rtl')}"
    text = cli("--help", check_code=0).stdout
    assert text.splitlines()[2].startswith("Turn a quantized TensorFlow Lite model")
    assert ":mod:" not in text and "``" not in text
    verbs = ("inspect", "diff", "run", "verify", "generate", "sim", "build", "infer", "bench")
    assert all(f"    {verb} " in text for verb in verbs)
    proc = cli()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert all(f"    {verb} " in proc.stderr for verb in verbs)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfl2rtl: error:")]
    assert lines == ["tfl2rtl: error: choose a command: " + ", ".join(verbs)]


def test_truncated_foreign_and_missing_files(zoo, tmp_path):
    data = (zoo / "tflite_micro" / "person_detect.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    assert_one_line_error(cli("inspect", cut), "truncated or corrupt")
    foreign = tmp_path / "photo.tflite"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert_one_line_error(cli("verify", foreign), "TFL3")
    assert_one_line_error(cli("run", tmp_path / "none.tflite", "--input", foreign),
                          "no such file")


def test_unsupported_op(tmp_path, zoo):
    # hello_world with its second operator's code patched to MUL (a real flatbuffer edit)
    from tfl2rtl.tflite_reader import read_model

    data = bytearray((zoo / "tflite_micro" / "hello_world_int8.tflite").read_bytes())
    import tflite

    model = tflite.Model.GetRootAsModel(bytes(data), 0)
    code = model.OperatorCodes(0)
    # the deprecated 8-bit code and the 32-bit code both name FULLY_CONNECTED (9)
    for field, size, value in ((4, 1, 18), (10, 4, 18)):
        offset = code._tab.Offset(field)
        if offset:
            pos = code._tab.Pos + offset
            data[pos:pos + size] = value.to_bytes(size, "little", signed=True)
    patched = tmp_path / "mul.tflite"
    patched.write_bytes(bytes(data))
    assert read_model(patched).op_names() == ["MUL", "MUL", "MUL"]
    assert_one_line_error(cli("verify", patched), "operator 0 (MUL) is not supported")


def test_usage_errors_are_one_line():
    proc = cli("verify")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("tfl2rtl: error:")
    proc = cli("verify", TEST_MODELS / "dense10_int8.tflite", "--profile", "nope")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_generate(zoo, tmp_path):
    proc = cli("generate", zoo / "tflite_micro" / "hello_world_int8.tflite", "-o",
               tmp_path / "out", "--fold", "full", check_code=0)
    assert "multipliers" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["folding"] == "full" and manifest["multipliers"] == 3


def test_generate_and_sim_a_legacy_uint8_model(tmp_path):
    """``generate`` writes a legacy uint8 model's hardware form: uint8 ports, 9-bit
    weights ``w - zw`` in three hex digits; ``sim`` gives the golden model's outputs."""
    path = TEST_MODELS / "uint8_legacy.tflite"
    cli("generate", path, "-o", tmp_path / "out", check_code=0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["input"]["dtype"] == manifest["output"]["dtype"] == "uint8"
    node = load(path).nodes[0]
    lines = (tmp_path / "out" / "mem" / "node00_weights.hex").read_text().split()
    values = np.array([int(v, 16) for v in lines])
    np.testing.assert_array_equal(np.where(values >= 256, values - 512, values),
                                  node.offset_weights.reshape(-1))
    assert {len(v) for v in lines} == {3}
    report = json.loads(cli("sim", path, "--inputs", "8", "--json", check_code=0).stdout)
    assert report["inputs"] == 8 and report["mismatches"] == 0


def test_generate_and_sim_the_sequential_engine(tmp_path):
    """``--arch sequential``: the manifest names the architecture and gives the
    schedule; ``sim`` runs the engine bit-exact; a model it does not take yet is refused
    in one line naming the op and its position, and nothing is written."""
    path = TEST_MODELS / "jet_mlp_int8.tflite"
    proc = cli("generate", path, "-o", tmp_path / "out", "--arch", "sequential",
               "--max-multipliers", "16", check_code=0)
    assert "sequential engine: 4 layers on one" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["architecture"] == "sequential" and manifest["multipliers"] <= 16
    steps = manifest["layers"]
    assert [s["node"] for s in steps] == [0, 1, 2, 3]
    assert [s["first_group"] for s in steps] == sorted(s["first_group"] for s in steps)
    assert manifest["schedule"]["issue_cycles"] <= manifest["initiation_interval"]
    # The printed schedule: a row per layer with its cycles, MACs and weight bytes (the
    # manifest's), and a total row.
    schedule = manifest["schedule"]
    rows = [line.split() for line in proc.stdout.splitlines()[2:]
            if line.startswith("  ") and line.split()[0] != "node"]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "total"]
    for row, layer in zip(rows, schedule["layers"] + [schedule], strict=True):
        cycles = layer["cycles"] if "cycles" in layer else layer["cycles_per_inference"]
        assert int(row[-6].replace(",", "")) == cycles
        assert int(row[-3].replace(",", "")) == layer["weight_bytes"]
        assert row[-2] == "0"  # nothing from flash yet
    assert sum(layer["macs"] for layer in schedule["layers"]) == manifest["macs"]
    assert schedule["cycles_per_inference"] <= manifest["initiation_interval"]
    # inspect --schedule plans the same engine and shows the same table.
    info = json.loads(cli("inspect", path, "--schedule", "--max-multipliers", "16", "--json",
                          check_code=0).stdout)
    assert info["schedule"] == schedule
    text = cli("inspect", path, "--schedule", "--max-multipliers", "16", check_code=0).stdout
    assert text.endswith(proc.stdout.split("\n", 1)[1])
    assert_one_line_error(cli("inspect", path, "--max-multipliers", "16"),
                          "--max-multipliers sizes the engine of --schedule")
    report = json.loads(cli("sim", path, "--inputs", "20", "--arch", "sequential", "--json",
                            check_code=0).stdout)
    assert report["inputs"] == 20 and report["mismatches"] == 0
    assert_one_line_error(cli("generate", TEST_MODELS / "cnn_int8.tflite", "-o",
                              tmp_path / "conv", "--arch", "sequential"),
                          "node 0 (PAD) is not in the sequential engine yet",
                          "--arch dataflow")
    assert not (tmp_path / "conv").exists()


def test_the_sequential_engine_with_its_weights_in_flash(tmp_path):
    """``--weights flash``: ``generate`` writes the flash's bytes beside the Verilog (the
    manifest says where they go, and the schedule counts every weight byte as read from
    flash); ``sim`` reads them from the flash model, bit-exact, on the seed's kind of
    model (legacy uint8); without ``--arch sequential`` it is a one-line error and
    nothing is written."""
    from tfl2rtl.hw.engine import FLASH_BASE

    path = TEST_MODELS / "uint8_legacy.tflite"
    proc = cli("generate", path, "-o", tmp_path / "out", "--arch", "sequential",
               "--weights", "flash", check_code=0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    image = (tmp_path / "out" / manifest["flash"]["image"]).read_bytes()
    assert manifest["flash"]["base"] == FLASH_BASE and manifest["flash"]["bytes"] == len(image)
    schedule = manifest["schedule"]
    assert schedule["weights_in"] == "flash"
    assert schedule["flash_bytes"] == schedule["weight_bytes"] == len(image)
    assert "flash_sck" in manifest["ports"]
    assert "bytes from flash" in proc.stdout
    # inspect --schedule --weights flash plans the same engine.
    info = json.loads(cli("inspect", path, "--schedule", "--weights", "flash", "--json",
                          check_code=0).stdout)
    assert info["schedule"] == schedule
    assert_one_line_error(cli("inspect", path, "--weights", "flash"),
                          "--weights places the weights of the engine of --schedule")
    report = json.loads(cli("sim", path, "--inputs", "6", "--arch", "sequential",
                            "--weights", "flash", "--json", check_code=0).stdout)
    assert report["inputs"] == 6 and report["mismatches"] == 0
    assert_one_line_error(cli("generate", path, "-o", tmp_path / "dataflow", "--weights",
                              "flash"), "--weights flash is for the sequential engine")
    assert not (tmp_path / "dataflow").exists()


def test_an_engine_of_convolutions_copies_its_flash_weights_at_start_up():
    """``inspect --schedule --weights flash`` on a model with convolutions: the weights
    are copied once into the unit's memory (each pixel reads its layer's rows again), so
    no layer reads flash and the schedule says what the copy takes."""
    path = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
    args = ("inspect", path, "--schedule", "--weights", "flash", "--max-multipliers", "4")
    schedule = json.loads(cli(*args, "--json", check_code=0).stdout)["schedule"]
    assert schedule["weights_in"] == "flash" and schedule["weights_copied"]
    assert schedule["flash_bytes"] == 0
    assert all(layer["flash_bytes"] == layer["flash_cycles"] == 0
               for layer in schedule["layers"])
    rows = schedule["weight_rows"] * schedule["pe"] * schedule["simd"]
    assert schedule["copy_cycles"] > rows  # (at most two bytes a cycle from quad SPI)
    text = cli(*args, check_code=0).stdout
    assert (f"weights: {rows:,} bytes copied from flash into the unit's memory at "
            f"start-up ({schedule['copy_cycles']:,} cycles, before the first inference), "
            "none from flash per inference") in text


def test_generate_errors(tmp_path):
    bad = tmp_path / "fold.json"
    bad.write_text('{"layers": {"1": {"pe": 3, "simd": 1}}}')
    assert_one_line_error(cli("generate", TEST_MODELS / "dense10_int8.tflite", "-o",
                              tmp_path / "out", "--fold", bad), "pe must divide 10")
    assert_one_line_error(cli("generate", TEST_MODELS / "dense10_int8.tflite", "-o",
                              tmp_path / "out", "--max-multipliers", "0"), "at least 1")


def test_verify_and_run_with_the_litert_profiles(zoo, tmp_path):
    model = zoo / "mlperf_tiny" / "kws_ref_model.tflite"
    for profile in ("litert", "litert-ref"):
        data = json.loads(cli("verify", model, "--samples", 5, "--profile", profile, "--json",
                              check_code=0).stdout)
        assert (data["profile"], data["samples"], data["mismatches"]) == (profile, 5, 0)
    x = tmp_path / "x.npy"
    np.save(x, np.array([[42]], np.int8))
    proc = cli("run", zoo / "tflite_micro" / "hello_world_int8.tflite", "--input", x,
               "--profile", "litert", check_code=0)
    assert "profile: litert" in proc.stdout
    proc = cli("verify", zoo / "tflite_micro" / "person_detect.tflite", "--samples", 1,
               "--profile", "litert", check_code=0)
    assert proc.stdout.startswith("OK:") and "note: LiteRT refuses the file" in proc.stdout


def test_inspect_shows_the_profiles_arithmetic(zoo):
    model = zoo / "tflite_micro" / "micro_speech_quantized.tflite"
    text = cli("inspect", model, "--profile", "litert", check_code=0).stdout
    assert "profile: litert" in text and "litert: XNNPACK; requantization float32" in text
    assert "litert: LiteRT builtin; softmax float32 exp table" in text
    info = json.loads(cli("inspect", model, "--profile", "litert", "--json",
                          check_code=0).stdout)
    dw = info["layers"][1]["arithmetic"]
    assert info["profile"] == "litert" and dw["runtime"] == "XNNPACK" and dw["per_channel"]
    assert dw["scale"][0] <= dw["scale"][1] < 256
    assert "tflm: TFLite Micro reference kernel" in cli("inspect", model, check_code=0).stdout
    proc = cli("inspect", model, "--profile", "nope")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_diff_lists_every_tensor(zoo, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).integers(-128, 128, (3, 1, 49, 10, 1)).astype(np.int8))
    model = zoo / "mlperf_tiny" / "kws_ref_model.tflite"
    text = cli("diff", model, "--input", x, check_code=0).stdout
    lines = text.splitlines()
    assert lines[0] == f"diff tflm vs litert: {model}, 3 inputs"
    assert len(lines) == 2 + 1 + 13 + 1  # header, columns, input + 13 nodes, summary
    assert "CONV_2D" in lines[3] and lines[-1].endswith("(node 0, CONV_2D)")
    data = json.loads(cli("diff", model, "--input", x, "--json", check_code=0).stdout)
    assert data["profiles"] == ["tflm", "litert"] and data["samples"] == 3
    conv = data["tensors"][1]
    assert conv["elements"] == 3 * 25 * 5 * 64 and conv["differing"] > 0
    assert sum(conv["histogram"].values()) == conv["differing"]
    assert max(int(k) for k in conv["histogram"]) == conv["max_abs_diff"]
    same = json.loads(cli("diff", zoo / "tflite_micro" / "person_detect.tflite", "--input",
                          _zeros(tmp_path, (1, 96, 96, 1)), "--profiles", "tflm,litert-ref",
                          "--json", check_code=0).stdout)
    assert same["differing_elements"] == 0 and same["first_difference"] is None


def _zeros(tmp_path, shape):
    path = tmp_path / "zeros.npy"
    np.save(path, np.zeros(shape, np.int8))
    return path


def test_diff_errors(tmp_path):
    model = TEST_MODELS / "dense10_int8.tflite"
    x = _zeros(tmp_path, (1, 28, 28, 1))
    assert_one_line_error(cli("diff", model, "--input", x, "--profiles", "tflm,nope"),
                          "unknown profile 'nope'", "tflm, litert, litert-ref")
    assert_one_line_error(cli("diff", model, "--input", x, "--profiles", "tflm,tflm"),
                          "two different profiles")
    assert_one_line_error(cli("diff", model, "--input", x, "--profiles", "tflm"),
                          "compares two profiles, 1 given")
    proc = cli("diff", model)
    assert proc.returncode == 2 and "--input" in proc.stderr


def test_float_edges_generate_and_sim(tmp_path):
    """A model with float32 edges builds: the manifest says the ports carry int8 and
    which scale and zero point the host's QUANTIZE and DEQUANTIZE use; sim takes float32
    inputs and compares float32 outputs bit for bit."""
    model = TEST_MODELS / "mlp_float_io.tflite"
    cli("generate", model, "-o", tmp_path / "out", check_code=0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["input"]["dtype"] == manifest["output"]["dtype"] == "int8"
    edges = manifest["host_edges"]
    assert (edges["input"]["host"], edges["input"]["model_dtype"]) == (["QUANTIZE"], "float32")
    assert (edges["input"]["scale"], edges["input"]["zero_point"]) == (
        manifest["input"]["scale"], manifest["input"]["zero_point"])
    assert (edges["output"]["host"], edges["output"]["nodes"]) == (["DEQUANTIZE"], [4])
    x = tmp_path / "x.npy"
    np.save(x, np.linspace(-3, 3, 2 * 16, dtype=np.float32).reshape(2, 1, 16))
    proc = cli("sim", model, "--inputs", 3, "--input", x, check_code=0)
    assert proc.stdout.startswith("OK: 5 inputs through the RTL, 0 mismatching (40 float32 "
                                  "outputs compared bit for bit")
    np.save(x, np.zeros((1, 16), np.int8))
    assert_one_line_error(cli("sim", model, "--input", x), "holds int8 but the model input "
                          "is float32")


def test_transpose_at_the_input_edge_and_inside_the_graph(tmp_path):
    """A PyTorch-style NCHW model verifies and generates (its input TRANSPOSE on the
    host); a TRANSPOSE inside the graph verifies and generates too (a hardware stage),
    but a folding file that gives it two elements a beat, where its permutation moves
    the innermost axis, is refused in one line."""
    from tflite_writer import GraphWriter

    model = TEST_MODELS / "nchw_float_io.tflite"
    proc = cli("verify", model, "--samples", 5, check_code=0)
    assert proc.stdout.startswith("OK:") and "0 mismatching" in proc.stdout
    cli("generate", model, "-o", tmp_path / "nchw", check_code=0)
    edges = json.loads((tmp_path / "nchw" / "manifest.json").read_text())["host_edges"]
    assert edges["input"]["host"] == ["QUANTIZE", "TRANSPOSE"]
    assert edges["input"]["permutation"] == [0, 2, 3, 1]
    rng = np.random.default_rng(0)
    g = GraphWriter()
    x = g.tensor((1, 4, 4, 2), "int8", 0.05, 1)
    h = g.conv_2d(x, rng.integers(-127, 128, (3, 1, 1, 2)), 0.01, None, (0.05, -2))
    y = g.transpose(h, (0, 3, 1, 2))
    inside = tmp_path / "inside.tflite"
    inside.write_bytes(g.finish([x], [y]))
    cli("verify", inside, "--samples", 3, check_code=0)
    cli("generate", inside, "-o", tmp_path / "inside", check_code=0)
    manifest = json.loads((tmp_path / "inside" / "manifest.json").read_text())
    assert "host_edges" not in manifest  # in hardware, not on the host
    assert [(layer["op"], layer["output_shape"], layer["cycles_per_vector"])
            for layer in manifest["layers"]][1] == ("TRANSPOSE", [3, 4, 4], 48)
    fold = tmp_path / "fold.json"
    fold.write_text('{"layers": {"1": {"pe": 2}}}')
    assert_one_line_error(cli("generate", inside, "-o", tmp_path / "out", "--fold", fold),
                          "node 1 (TRANSPOSE): pe=2, but the permutation (0, 3, 1, 2) moves "
                          "the innermost axis, so the hardware transposes one element per "
                          "beat (pe=1)")
    assert not (tmp_path / "out").exists()


def test_diff_of_a_legacy_uint8_model_compares_the_litert_profiles(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(1).integers(0, 256, (2, 1, 16)).astype(np.uint8))
    model = TEST_MODELS / "uint8_legacy.tflite"
    text = cli("diff", model, "--input", x, check_code=0).stdout
    assert text.splitlines()[0] == f"diff litert-ref vs litert: {model}, 2 inputs"
    assert_one_line_error(cli("diff", model, "--input", x, "--profiles", "tflm,litert"),
                          "the tflm profile does not apply")


def _processes_in(folder: Path) -> dict[int, str]:
    """The processes of this machine whose working folder is inside ``folder`` (or was:
    a removed one reads as "... (deleted)"): their command lines by process id."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if os.readlink(entry / "cwd").startswith(str(folder)):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().decode()
        except (OSError, ValueError):  # not a process, gone, or not ours to read
            continue
    return found


def test_a_terminated_build_stops_its_tool_and_leaves_nothing(zoo, tmp_path):
    """SIGTERM during synthesis: Yosys stopped, the temporary folder removed, no output
    folder, one line and exit status 143 (128 + SIGTERM), as Ctrl-C gives 130."""
    temporary, out = tmp_path / "tmp", tmp_path / "out"
    temporary.mkdir()
    proc = subprocess.Popen(
        [TFL2RTL, "build", zoo / "tflite_micro" / "hello_world_int8.tflite", "--board",
         "icebreaker", "-o", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "TMPDIR": str(temporary)})
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "synthesis (Yosys) ..." in line:
                break
        for _ in range(600):  # Yosys starts in there (the line comes just before)
            if _processes_in(temporary):
                break
            time.sleep(0.1)
        assert _processes_in(temporary), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
        lines += rest.splitlines(keepends=True)
        assert proc.returncode == 128 + signal.SIGTERM, "".join(lines)
        assert lines[-1] == "tfl2rtl: terminated\n"
        assert "Traceback" not in "".join(lines)
        assert not out.exists()
        assert list(temporary.iterdir()) == []
        assert _processes_in(temporary) == {}
    finally:  # nothing left running when the test fails
        proc.kill()
        for pid in _processes_in(temporary):
            os.kill(pid, signal.SIGKILL)
