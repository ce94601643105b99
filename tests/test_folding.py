"""Folding: auto balances within budget and is optimal; fold files are checked."""

import itertools
import json

import pytest

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.folding import Fold, auto_fold, folded_layers, full_fold, layer_cycles, load_fold
from tfl2rtl.lower import lower
from tfl2rtl.tflite_reader import read_model


@pytest.fixture(scope="module")
def hello(zoo):
    return lower(read_model(zoo / "tflite_micro" / "hello_world_int8.tflite"))


@pytest.fixture(scope="module")
def ad01(zoo):
    return lower(read_model(zoo / "mlperf_tiny" / "ad01_int8.tflite"))


def interval(graph, fold):
    layers = folded_layers(graph)
    return max(layer_cycles(layers[i], fold[i]) for i in layers)


@pytest.mark.parametrize("budget", [10, 37, 64, 156, 1000])
def test_auto_fold_fits_and_divides(ad01, budget):
    fold = auto_fold(ad01, budget)
    assert sum(f.multipliers for f in fold.values()) <= budget
    for i, stage in folded_layers(ad01).items():
        out_depth, accum_depth = stage.node.weights.shape
        assert out_depth % fold[i].pe == 0 and accum_depth % fold[i].simd == 0


@pytest.mark.parametrize("budget", [3, 4, 6, 9, 16, 40])
def test_auto_fold_is_optimal_by_exhaustive_search(hello, budget):
    layers = folded_layers(hello)
    choices = []
    for stage in layers.values():
        o, i = stage.node.weights.shape
        choices.append([Fold(p, s) for p in range(1, o + 1) if o % p == 0
                        for s in range(1, i + 1) if i % s == 0])
    best = min(
        max(layer_cycles(n, f) for n, f in zip(layers.values(), combo, strict=True))
        for combo in itertools.product(*choices)
        if sum(f.multipliers for f in combo) <= budget
    )
    assert interval(hello, auto_fold(hello, budget)) == best


def test_more_multipliers_never_slower(ad01):
    intervals = [interval(ad01, auto_fold(ad01, b)) for b in (10, 20, 40, 80, 160, 320)]
    assert intervals == sorted(intervals, reverse=True) and intervals[-1] < intervals[0]


def test_min_interval_saves_multipliers(ad01):
    wide = auto_fold(ad01, 1000)
    bounded = auto_fold(ad01, 1000, min_interval=640)
    assert interval(ad01, bounded) <= 640 < interval(ad01, auto_fold(ad01, 100))
    assert sum(f.multipliers for f in bounded.values()) < sum(
        f.multipliers for f in wide.values())


def test_budget_below_one_per_layer(ad01):
    with pytest.raises(Tfl2RtlError, match=r"below the smallest design's 10 multipliers .*"
                                           r"give at least 10$"):
        auto_fold(ad01, 9)


def test_fold_file(hello, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"layers": {"1": {"pe": 4, "simd": 8}}}))
    assert load_fold(hello, f) == {0: Fold(1, 1), 1: Fold(4, 8), 2: Fold(1, 1)}
    f.write_text(json.dumps({"layers": {"1": {"pe": 3, "simd": 1}}}))
    with pytest.raises(Tfl2RtlError, match=r"fold.json: node 1 \(FULLY_CONNECTED\): .*pe must "
                                           r"divide 16"):
        load_fold(hello, f)
    f.write_text("{not json")
    with pytest.raises(Tfl2RtlError, match="not a folding file"):
        load_fold(hello, f)
    with pytest.raises(Tfl2RtlError, match="no such folding file"):
        load_fold(hello, tmp_path / "none.json")


def test_auto_fold_balances_convolution_networks(zoo):
    # Every stage of a convolutional network gets a folding; within the budget, no stage
    # is slower than the chosen interval, and one more multiplier's worth of budget cut
    # makes the interval longer (the choice is tight).
    graph = lower(read_model(zoo / "mlperf_tiny" / "kws_ref_model.tflite"))
    layers = folded_layers(graph)
    assert {type(s.node).__name__ for s in layers.values()} >= {
        "Conv2D", "DepthwiseConv2D", "AveragePool2D", "FullyConnected"}
    fold = auto_fold(graph, 128)
    used = sum(layers[i].multipliers(f) for i, f in fold.items())
    assert used <= 128
    worst = interval(graph, fold)
    smaller = auto_fold(graph, used - 1)
    assert interval(graph, smaller) > worst
    # Depthwise layers cost one multiplier per output channel a cycle, pools nothing.
    for i, stage in layers.items():
        if type(stage.node).__name__ == "AveragePool2D":
            assert stage.multipliers(fold[i]) == 0
        if type(stage.node).__name__ == "DepthwiseConv2D":
            assert stage.multipliers(fold[i]) == fold[i].pe


def test_depthwise_layers_fold_below_their_depth_multiplier(zoo):
    # micro_speech's depthwise layer makes 8 output channels from one input channel: it
    # can take 1, 2, 4 or 8 multipliers (each halving doubles its cycles), and the
    # smallest design gives it one.
    graph = lower(read_model(zoo / "tflite_micro" / "micro_speech_quantized.tflite"))
    ((index, stage),) = [(i, s) for i, s in folded_layers(graph).items()
                         if type(s.node).__name__ == "DepthwiseConv2D"]
    assert stage.node.depth_multiplier == 8
    options = stage.options()
    assert [f.pe for f in options] == [1, 2, 4, 8]
    assert [stage.multipliers(f) for f in options] == [1, 2, 4, 8]
    assert [stage.cycles(f) * f.pe for f in options] == [stage.cycles(options[0])] * 4
    assert full_fold(graph)[index] == Fold(1, 1)
    assert auto_fold(graph, 2)[index] == Fold(1, 1)
