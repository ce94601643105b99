"""The SPRAM a sequential engine takes on the iCEBreaker (:mod:`tfl2rtl.boards.memory`):
its weights copied from flash and its activation memory's regions, each in row memories
of ``SB_SPRAM256KA`` blocks, counted before synthesis."""

import re

import pytest

from conftest import ZOO
from tfl2rtl.api import load
from tfl2rtl.boards.board import BOARDS, DoesNotFit
from tfl2rtl.boards.fit import sequential_design
from tfl2rtl.boards.memory import engine_spram
from tfl2rtl.boards.spram import SPRAM_DEPTH, SPRAM_WIDTH

KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"


def test_the_engine_copies_kws_weights_into_spram_beside_its_activations():
    """kws_ref_model on the iCEBreaker, its weights in flash: the fastest engine whose
    DSP blocks and SPRAM fit copies its weight rows into SPRAM at start-up; the rows and
    the two regions of the largest tensor fill whole blocks, side by side and deep."""
    icebreaker = BOARDS["icebreaker"]
    plan = sequential_design(load(KWS), icebreaker, weights="flash").network_plan
    schedule = plan.schedule
    assert schedule.weights == "flash" and schedule.copied and schedule.tensors
    weights, activations = engine_spram(plan)
    assert weights + activations <= icebreaker.available["SPRAM"]
    row_bits, region = 8 * schedule.row_bytes, schedule.buffer_beats // 2
    assert weights == -(-row_bits // SPRAM_WIDTH) * -(-schedule.rows // SPRAM_DEPTH)
    assert activations == 2 * -(-8 * schedule.simd // SPRAM_WIDTH) * -(-region // SPRAM_DEPTH)
    # On chip (a ROM in block RAM) the weights take no SPRAM; the regions still do.
    on_chip = sequential_design(load(KWS), icebreaker, weights="chip").network_plan
    assert not on_chip.schedule.copied and engine_spram(on_chip)[0] == 0


def test_an_engine_whose_spram_overflows_is_refused_before_synthesis():
    """A user-sized engine whose copied weight rows are too wide for the SPRAM is refused
    in one line that names what takes the blocks; without a size the search keeps to
    the engines that fit."""
    icebreaker = BOARDS["icebreaker"]
    with pytest.raises(DoesNotFit) as refusal:
        sequential_design(load(KWS), icebreaker, weights="flash", max_multipliers=64)
    found = re.fullmatch(r"kws_ref_model\.tflite does not fit icebreaker: SPRAM overflows "
                         r"\((\d+) needed, 4 available: its weights copied from flash "
                         r"(\d+) and its activation memory (\d+)\); a smaller "
                         r"--max-multipliers takes less", str(refusal.value))
    assert found, refusal.value
    assert int(found[1]) == int(found[2]) + int(found[3]) > 4
    assert refusal.value.resource == "SPRAM"
    # Boards without SPRAM count none.
    ulx3s = sequential_design(load(KWS), BOARDS["ulx3s-85f"], max_multipliers=64)
    assert ulx3s.network_plan.multipliers > 4
