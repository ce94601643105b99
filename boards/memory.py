"""Where a design's weights go on a board: :func:`check_memory` refuses a model whose
weights alone exceed the device's block RAM and SPRAM, before any planning;
:func:`place_weights` moves the largest weight memories into SPRAM on boards that have
it (memories the host loads over the link, since the bitstream cannot fill SPRAM)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .board import BOARDS, Board, DoesNotFit
from .spram import SPRAM_DEPTH, SPRAM_WIDTH, spram_tiles

__all__ = ["BLOCK_BITS", "SPRAM_BYTES", "check_memory", "place_weights", "engine_spram",
           "check_engine_spram"]


#: Block RAM bits per block, by family (iCE40 EBR 4 kbit; ECP5 DP16KD and Gowin BSRAM
#: 18 kbit, of which 16 kbit hold bytes).
BLOCK_BITS = {"ice40": 4096, "ecp5": 16384, "gowin": 16384}


#: Bytes of one SPRAM block (iCE40 ``SB_SPRAM256KA``: 16384 x 16 bits).
SPRAM_BYTES = SPRAM_DEPTH * SPRAM_WIDTH // 8


def _memory_bytes(board: Board) -> tuple[int, int]:
    """The board's block RAM and SPRAM, in bytes of weights."""
    return (board.available.get("BRAM", 0) * BLOCK_BITS[board.family] // 8,
            board.available.get("SPRAM", 0) * SPRAM_BYTES)


def check_memory(graph, board: Board) -> None:
    """Raise :class:`DoesNotFit` when the weights of ``graph`` alone exceed the board's
    block RAM and SPRAM (no folding changes how many weights there are): before any
    planning or synthesis."""
    blocks = board.available.get("BRAM", 0)
    bram, spram = _memory_bytes(board)
    needed = int(graph.weight_bytes)
    blocks_needed = -(-8 * needed // BLOCK_BITS[board.family])
    if needed > bram + spram:
        others = [b.name for b in BOARDS.values() if sum(_memory_bytes(b)) >= needed]
        hint = (f"choose a board with more: {', '.join(others)}" if others else
                "no board tfl2rtl knows has that much")
        has = f"the device has {blocks} ({bram:,} bytes)"
        if spram:
            has += f" and {spram:,} bytes of SPRAM"
        raise DoesNotFit(
            f"{Path(graph.source).name} does not fit {board.name}: BRAM overflows: "
            f"its {needed:,} bytes of weights and biases need {blocks_needed} "
            f"blocks, {has}; no folding reduces the weights: {hint}")


def place_weights(design, board: Board):
    """``design`` with its largest weight memories moved out of block RAM into memories
    the host loads at run time (:class:`tfl2rtl.hw.weights.LoadableMemory`, SPRAM on the
    iCE40), on boards with SPRAM, while the weights take more than half the block RAM
    (the rest is left to line buffers, FIFOs and biases).  Memories are moved largest
    first, each where the SPRAM blocks still free hold it
    (:func:`tfl2rtl.boards.spram.spram_tiles`).  Raises :class:`DoesNotFit` when the
    weights left still exceed the block RAM."""
    tiles = board.available.get("SPRAM", 0)
    bram, _ = _memory_bytes(board)
    left = int(design.graph.weight_bytes)
    if not tiles or left <= bram // 2 or design.architecture == "sequential":
        return design  # (a sequential engine's weights: one initialised memory)
    plan = design.network_plan
    candidates = sorted((s for s in plan.stages if s.stage.loadable),
                        key=lambda s: (-s.stage.weight_matrix().size, s.index))
    moved = []
    for stage in candidates:
        if left <= bram // 2:
            break
        rows, row_bytes = stage.stage.weight_memory(stage.fold)
        need = spram_tiles(8 * row_bytes, rows)
        if need <= tiles:
            tiles -= need
            left -= rows * row_bytes
            moved.append(stage.index)
    if left > bram:
        raise DoesNotFit(
            f"{Path(design.graph.source).name} does not fit {board.name}: BRAM overflows: "
            f"{left:,} bytes of weights stay in block RAM ({bram:,} bytes) after the "
            f"SPRAM is used; a smaller --max-multipliers makes weight rows narrower "
            f"(fewer SPRAM blocks per layer)")
    return dataclasses.replace(design, network_plan=plan.with_loadable(moved))


def engine_spram(plan) -> tuple[int, int]:
    """The SPRAM blocks a sequential engine (``plan``, a
    :class:`~tfl2rtl.hw.engine.SequentialPlan`) takes on a board whose row memories are
    SPRAM (:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK`): for its weights when they are
    :attr:`~tfl2rtl.hw.engine.Schedule.copied` from flash, and for the regions of its
    activation memory (:class:`tfl2rtl.hw.patches.ActivationMemory`), each
    :func:`~tfl2rtl.boards.spram.spram_tiles`."""
    schedule = plan.schedule
    weights = (spram_tiles(8 * schedule.row_bytes, schedule.rows) if schedule.copied
               else 0)
    activations = 0
    if schedule.tensors:
        regions = 2 if len(schedule.walks) > 1 else 1
        activations = regions * spram_tiles(8 * schedule.simd, schedule.buffer_beats // regions)
    return weights, activations


def check_engine_spram(design, board: Board, *, smallest: bool) -> None:
    """Raise :class:`DoesNotFit` (``SPRAM``) when a sequential engine's SPRAM
    (:func:`engine_spram`) exceeds the board's: before synthesis.  ``smallest``: no
    smaller engine would take less (the refusal says so)."""
    available = board.available.get("SPRAM")
    if available is None:
        return
    weights, activations = engine_spram(design.network_plan)
    if weights + activations > available:
        parts = [f"{what} {blocks}" for what, blocks in
                 (("its weights copied from flash", weights),
                  ("its activation memory", activations)) if blocks]
        raise DoesNotFit(
            f"{Path(design.graph.source).name} does not fit {board.name}: SPRAM "
            f"overflows ({weights + activations} needed, {available} available: "
            f"{' and '.join(parts)}); "
            + ("even the smallest engine does not fit, and streaming a convolution's "
               "weights from flash layer by layer is not built yet" if smallest else
               "a smaller --max-multipliers takes less"), "SPRAM")
