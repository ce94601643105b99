"""How many DSP blocks a design needs on a board (:func:`dsp_estimate`), the multiplier
budget that fits them (:func:`fitting_budget`), the design a default build makes, with
products in logic beyond the DSP blocks where the board allows (:func:`fitting_design`),
and the one-line advice when a build overflows a resource (:func:`check_cells` from
Yosys' cells, :func:`check_placement` from nextpnr's logs)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tfl2rtl import design as gen
from tfl2rtl import ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.folding import full_fold
from tfl2rtl.hw.elementwise import add_input_factors, add_input_tables
from tfl2rtl.hw.pool import pool_multipliers
from tfl2rtl.hw.requant import lane_multipliers

from .board import Board, DoesNotFit, count
from .memory import BLOCK_BITS, check_engine_spram, engine_spram

__all__ = ["dsp_estimate", "stage_dsp_estimate", "mac_dsps", "stage_mac_dsps",
           "fitting_budget", "fitting_design", "sequential_design", "LOGIC_PRODUCT_LUTS",
           "check_cells", "check_placement", "engine_size"]


def _add_scaling_multipliers(stage, board: Board) -> int:
    """The DSP multipliers of one lane of an ADD stage's input scaling: none where it
    reads tables (:func:`tfl2rtl.hw.elementwise.add_input_tables`: int8 inputs, on boards
    other than the iCE40), else one per constant factor
    (:func:`tfl2rtl.hw.elementwise.add_input_factors`) but for powers of two, which Yosys
    turns into shifts."""
    if add_input_tables(stage.stage.act_bits, board.add_products):
        return 0
    return sum(1 for f in add_input_factors(stage.node) if f < 0 or f & (f - 1))


#: The DSP blocks of a SOFTMAX stage: its one 32x32 multiplier computes its four
#: partial products in turn on one 16x16 multiplier
#: (:func:`tfl2rtl.hw.softmax.doubling_high_multiply`; measured: 1 ``SB_MAC16`` on the
#: iCE40, ``tests/test_hw_synth.py``).
SOFTMAX_DSPS = 1


#: ECP5 LUTs (``TRELLIS_COMB``: LUT4s and carry halves) of one int8 MAC product built in
#: logic (:func:`tfl2rtl.hw.pipeline.logic_product`), measured with the board's Yosys
#: flow on a 128x640 matrix-vector unit at pe=4, simd=8: 32 products in logic took 4,887
#: LUT4s and 800 carry cells (1,600 halves) more than in MULT18X18D blocks.
LOGIC_PRODUCT_LUTS = 203


def stage_mac_dsps(stage, board: Board) -> int:
    """The DSP blocks of one planned stage that multiply activations by weights: one per
    MAC multiplier, none for a stage whose products are built in logic
    (:attr:`tfl2rtl.hw.network.StagePlan.products_in_logic`)."""
    if stage.products_in_logic:
        return 0
    return stage.multipliers


def mac_dsps(design, board: Board) -> int:
    """The DSP blocks of ``design`` on ``board`` that multiply activations by weights
    (:func:`stage_mac_dsps` summed; a sequential engine's shared unit: its ``pe *
    simd``): the rest of :func:`dsp_estimate` requantizes and scales."""
    if design.architecture == "sequential":
        return design.network_plan.multipliers
    return sum(stage_mac_dsps(s, board) for s in design.network_plan.stages)


def stage_dsp_estimate(stage, board: Board) -> int:
    """The DSP blocks one planned stage (a :class:`tfl2rtl.hw.network.StagePlan`) needs
    on ``board``: one per MAC multiplier (none for products in logic), and per
    requantized output lane
    one (with serial products) or four (the 16x16 partial products of a q31 multiplier,
    of a FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D layer as
    :func:`~tfl2rtl.hw.requant.lane_multipliers` counts them: two where its
    accumulators are narrow or its multipliers 16 bits;
    four also for a legacy uint8 FULLY_CONNECTED's
    :class:`~tfl2rtl.hw.requant.RoundingRequantizer`, never serial: measured on the
    uint8 CNN's); ADD also scales its
    two inputs in each lane (:func:`_add_scaling_multipliers`: on the iCE40 only; other
    boards read tables);
    an AVERAGE_POOL_2D one a lane for its product by the reciprocal of the count
    (:func:`tfl2rtl.hw.pool.pool_multipliers`);
    SOFTMAX has :data:`SOFTMAX_DSPS` (none with its multiplies in logic).

    Measured against Yosys (``tests/test_hw_synth.py``): cnn_int8's ADD alone at two
    lanes, 3 ``SB_MAC16`` a lane on the iCE40 (two input factors and the serial
    requantizer); ResNet-8's first ADD at two lanes, 4 ``MULT18X18D`` a lane on the
    ECP5, 1 with serial products, and two ``DP16KD`` tables."""
    node = stage.node
    macs = stage_mac_dsps(stage, board)
    per_lane = (1 if board.serial_requantizer or stage.serial_requantizer
                or stage.compact_requantizer else 4)
    if getattr(node, "requantization", "integer") == "double":
        per_lane = 4  # a RoundingRequantizer: |acc| x 31 bits, never serial
    elif (per_lane == 4 and getattr(node, "accumulator", "int32") == "int32"
          and isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D)):
        # parallel products: two for narrow accumulators and 16-bit multipliers
        per_lane = lane_multipliers(node.requant.multiplier, node.requant.shift,
                                    node.acc_bits)
    if isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D | ir.Mean):
        return macs + stage.out_lanes * per_lane
    if isinstance(node, ir.Add):
        return macs + stage.out_lanes * (per_lane + _add_scaling_multipliers(stage, board))
    if isinstance(node, ir.AveragePool2D):
        return pool_multipliers(node, stage.stage.in_shape, stage.fold.pe,
                                stage.stage.act_bits)
    if isinstance(node, ir.Softmax):
        return macs + (0 if stage.products_in_logic else SOFTMAX_DSPS)
    return macs


def dsp_estimate(design, board: Board) -> int:
    """The DSP blocks ``design`` needs on ``board``: the sum of
    :func:`stage_dsp_estimate` over its stages.  Measured against Yosys on ECP5 (the
    board top of kws): 133 estimated and 138 ``MULT18X18D`` used at 49 MAC multipliers,
    205 and 210 at 89.  A sequential engine: its shared unit's multipliers, its
    requantizer's (:attr:`tfl2rtl.hw.engine.SequentialPlan.requant_multipliers`), its
    pools' (:attr:`~tfl2rtl.hw.engine.SequentialPlan.pool_multipliers`) and the stages
    after its last layer."""
    plan = design.network_plan
    if design.architecture == "sequential":
        return (plan.multipliers + plan.requant_multipliers + plan.pool_multipliers
                + sum(stage_dsp_estimate(s, board) for s in plan.tail))
    return sum(stage_dsp_estimate(s, board) for s in plan.stages)


def _largest_budget(graph, budget: int, fits, *, lanes: int, requant_interval: int):
    """The largest ``--max-multipliers`` at most ``budget`` whose ``--fold auto`` design
    satisfies ``fits``, and that design; ``(None, None)`` when none down to the smallest
    design does.  Budgets between two designs give the smaller one, so each step jumps
    below the last design's multipliers."""
    while budget >= 1:
        try:
            candidate = gen.plan(graph, "auto", budget, lanes=lanes,
                                 requant_interval=requant_interval)
        except Tfl2RtlError:  # below one multiplier per layer
            break
        if fits(candidate):
            return budget, candidate
        budget = min(budget - 1, candidate.multipliers - 1)
    return None, None


def fitting_budget(graph, board: Board, *, lanes: int = 1, requant_interval: int = 1) -> int:
    """The ``--max-multipliers`` that ``--fold auto`` uses on ``board`` when none is
    given: the board's :attr:`Board.default_multipliers` (raised to the smallest
    design's multipliers when that needs more), lowered until :func:`dsp_estimate` fits
    the device's DSP blocks (on boards whose DSP use is counted, :attr:`Board.dsp_fit`);
    the smallest design when nothing fits (the build then reports the overflow)."""
    smallest = gen.plan(graph, full_fold(graph), lanes=lanes,
                        requant_interval=requant_interval).multipliers
    budget = max(board.default_multipliers, smallest)
    if not board.dsp_fit:
        return budget
    available = board.available.get("DSP", 0)
    budget, _ = _largest_budget(graph, budget,
                                lambda d: dsp_estimate(d, board) <= available,
                                lanes=lanes, requant_interval=requant_interval)
    return smallest if budget is None else budget


def engine_weights(graph, board: Board) -> str:
    """Where a sequential engine on ``board`` keeps the weights of ``graph`` by default:
    in the board's flash (:attr:`Board.flash`) when they take more than half its block
    RAM (the rest is left to the activation and input buffers and the FIFOs), else on
    chip."""
    bram = board.available.get("BRAM", 0) * BLOCK_BITS[board.family] // 8
    if board.flash is not None and int(graph.weight_bytes) > bram // 2:
        return "flash"
    return "chip"


def engine_size(design) -> tuple[int, int]:
    """What a sequential engine's logic grows with most, in order: its requantizer
    lanes (on the iCE40 a serial lane's pipeline registers take some 600 logic cells)
    and its MAC multipliers."""
    plan = design.network_plan
    return plan.schedule.requant_lanes, plan.multipliers


def sequential_design(graph, board: Board, *, lanes: int = 1,
                      max_multipliers: int | None = None, below=None,
                      weights: str = "auto"):
    """The sequential engine a build makes for ``board``: within ``max_multipliers``
    when given, else the fastest of every folding and number of requantizer lanes whose
    DSP estimate (:func:`dsp_estimate`) fits the device (on boards whose DSP use is
    counted, :attr:`Board.dsp_fit`; otherwise within the board's
    :attr:`Board.default_multipliers`), with a SOFTMAX after the last layer on its DSP
    block or its multiplies in logic, whichever engine is faster (the DSP block on a
    tie); the smallest when none fits (the build then reports the overflow).

    With ``below`` (an engine whose logic overflowed), the fastest among the smaller
    ones (:func:`engine_size`: fewer requantizer lanes, or as many and fewer
    multipliers); None when there is none.

    ``weights``: ``"chip"`` (a ROM in block RAM), ``"flash"`` (the board's SPI flash,
    :attr:`Board.flash`) or ``"auto"``: :func:`engine_weights`."""
    from tfl2rtl.hw.engine import plan_sequential

    interval = board.requant_interval
    weights = engine_weights(graph, board) if weights == "auto" else weights
    if weights == "flash" and board.flash is None:
        raise Tfl2RtlError(f"{board.name}: tfl2rtl does not read weights from its flash "
                           "yet (the iCEBreaker's only); choose a board with one")
    place = {"weights": weights, "flash_width": board.flash_width}
    if max_multipliers is not None or not board.dsp_fit:
        budget = board.default_multipliers if max_multipliers is None else max_multipliers
        design = gen.plan(graph, "auto", budget, lanes=lanes, requant_interval=interval,
                          arch="sequential", weights=weights)
        check_engine_spram(design, board, smallest=False)
        return design
    available = board.available.get("DSP", 0)
    spram = board.available.get("SPRAM")
    smallest = gen.plan(graph, "auto", 1, lanes=lanes, requant_interval=interval,
                        arch="sequential", weights=weights)
    check_engine_spram(smallest, board, smallest=True)

    def fastest(tail_in_logic: bool):
        """The fastest engine that fits, its tail's multiplies in logic or not; None
        when not even one multiplier fits."""
        # (smallest.graph: the graph the hardware computes, any float edges on the host)
        least = plan_sequential(smallest.graph, 1, lanes=lanes, requant_interval=interval,
                                tail_in_logic=tail_in_logic, **place)

        def fits(schedule) -> bool:
            engine = dataclasses.replace(smallest, network_plan=dataclasses.replace(
                least, schedule=schedule))
            return (dsp_estimate(engine, board) <= available
                    and (spram is None
                         or sum(engine_spram(engine.network_plan)) <= spram)
                    and (below is None or engine_size(engine) < engine_size(below)))

        if not fits(least.schedule):
            return None
        return plan_sequential(smallest.graph, available, lanes=lanes,
                               requant_interval=interval, fits=fits,
                               tail_in_logic=tail_in_logic, **place)

    # A SOFTMAX after the last layer may give its DSP block to the MAC array (its
    # multiplies by shift and add): whichever is faster, the DSP block on a tie.
    forms = [False] + ([True] if any(t.stage.products_in_logic
                                     for t in smallest.network_plan.tail) else [])
    engines = [e for e in map(fastest, forms) if e is not None]
    if not engines:
        # not even one multiplier fits: the build reports the overflow
        return None if below is not None else smallest
    engine = min(engines, key=lambda e: e.cycles_per_vector)
    return dataclasses.replace(smallest, network_plan=engine,
                               fold_source=f"sequential ({available} DSP blocks)")


def _dsps_fitted(design, board: Board):
    """``design`` when its DSP estimate fits ``board`` (or the board's DSP use is not
    counted); else with the products of the fewest MAC multipliers moved to logic that
    make it fit within :attr:`Board.logic_multipliers` (whole FULLY_CONNECTED, CONV_2D
    and DEPTHWISE_CONV_2D layers; the first such set in node order among the smallest);
    else None."""
    available = board.available.get("DSP", 0)
    excess = dsp_estimate(design, board) - available
    if not board.dsp_fit or excess <= 0:
        return design
    cap = board.logic_multipliers
    # The smallest sum of layers' multipliers that covers the excess: subset sums,
    # each reached first by the layers earliest in node order.
    reach = {0: ()}
    for s in design.network_plan.stages:
        if not s.stage.products_in_logic or not s.multipliers or stage_mac_dsps(s, board) == 0:
            continue
        for total, chosen in sorted(reach.items()):
            new = total + s.multipliers
            if new <= cap and new not in reach:
                reach[new] = (*chosen, s.index)
    covering = [total for total in reach if total >= excess]
    if not covering:
        return None
    return gen.products_in_logic(design, reach[min(covering)])


def fitting_design(graph, board: Board, *, lanes: int = 1, requant_interval: int = 1,
                   below: int | None = None):
    """The design a default build (``--fold auto`` without ``--max-multipliers``) makes
    for ``board``: the one with the most multipliers, and so the shortest initiation
    interval, whose DSP estimate fits, where some layers' MAC products may be built in
    LUTs (:func:`tfl2rtl.design.products_in_logic`, at most
    :attr:`Board.logic_multipliers` of them, the fewest that make the DSP blocks
    suffice).  Without logic multipliers it is the design of :func:`fitting_budget`.
    With ``below``, the same search among designs with fewer than ``below``
    multipliers (a build's next try after an overflow); None when there is none."""
    dsp_budget = fitting_budget(graph, board, lanes=lanes, requant_interval=requant_interval)
    top = dsp_budget + (board.logic_multipliers if board.dsp_fit else 0)
    if below is not None:
        top = min(top, below - 1)
    fitted = {}

    def fits(candidate) -> bool:
        fitted["design"] = _dsps_fitted(candidate, board)
        return fitted["design"] is not None

    _, candidate = _largest_budget(graph, top, fits, lanes=lanes,
                                   requant_interval=requant_interval)
    if candidate is not None:
        return fitted["design"]
    if below is not None:
        return None
    # Nothing fits: the smallest design (the build reports the overflow).
    return gen.plan(graph, "auto", dsp_budget, lanes=lanes, requant_interval=requant_interval)


def _suggest(design, board: Board, resource: str, used: int, available: int) -> str:
    """A folding that would fit ``resource`` (multipliers are what folding changes)."""
    if resource not in ("DSP", "LUT", "FF", "BRAM"):
        return "no folding reduces it"
    if design.architecture == "sequential":
        if design.multipliers > 1 or engine_size(design)[0] > 1:
            return (f"a smaller engine needs less (--max-multipliers "
                    f"{max(design.multipliers - 1, 1)} or fewer)")
        return "even the smallest engine does not fit: choose a larger board"
    # What folding does not change: DSP blocks outside the MAC and requantizer multipliers.
    others = used - dsp_estimate(design, board) if resource == "DSP" else 0

    def fits(candidate) -> bool:
        if resource == "DSP":
            return dsp_estimate(candidate, board) + others <= available
        # logic shrinks roughly with the multipliers
        return used * candidate.multipliers / max(design.multipliers, 1) <= 0.9 * available

    budget, fitting = _largest_budget(
        design.graph, design.multipliers - 1, fits, lanes=design.lanes,
        requant_interval=design.network_plan.requant_interval)
    if fitting is None:
        rest = f" (the rest of the design needs {others} {resource})" if others else ""
        return f"even fully folded it does not fit{rest}: choose a larger board"
    if resource == "DSP":
        return (f"--max-multipliers {budget} would fit (about "
                f"{dsp_estimate(fitting, board) + others} {resource}; initiation interval "
                f"{fitting.initiation_interval} cycles instead of "
                f"{design.initiation_interval})")
    what = ("block RAM shrinks with the multipliers, its weight memories' rows narrower"
            if resource == "BRAM" else "logic shrinks roughly with the multipliers")
    return (f"--max-multipliers {budget} needs less ({what}; initiation interval "
            f"{fitting.initiation_interval} cycles instead of {design.initiation_interval})")


def check_cells(design, board: Board, cells: dict[str, int]) -> None:
    """Raise :class:`DoesNotFit` when Yosys' ``cells`` (cell type -> number) need more
    DSP or block RAM than the board has (logic is checked from nextpnr's placement:
    :func:`check_placement`), with a folding that would fit."""
    for resource, kinds in board.cells.items():
        used, available = count(cells, kinds), board.available.get(resource, 0)
        if resource in ("LUT", "FF"):
            continue  # placement decides (packing, carries): checked from nextpnr
        if used > available:
            raise DoesNotFit(
                f"{Path(design.graph.source).name} does not fit {board.name}: {resource} "
                f"overflows ({used} needed, {available} available); "
                + _suggest(design, board, resource, used, available), resource)


def check_dsp_estimate(design, board: Board) -> None:
    """Raise :class:`DoesNotFit` before synthesis when, on a board whose DSP use is
    counted (:attr:`Board.dsp_fit`), the :func:`dsp_estimate` of ``design`` exceeds its
    DSP blocks: the estimate counts no more than Yosys maps (see there), so the design
    would overflow in synthesis too."""
    available = board.available.get("DSP", 0)
    if board.dsp_fit and (needed := dsp_estimate(design, board)) > available:
        raise DoesNotFit(
            f"{Path(design.graph.source).name} does not fit {board.name}: DSP overflows "
            f"({needed} needed, {available} available); "
            + _suggest(design, board, "DSP", needed, available), "DSP")


def check_placement(design, board: Board, *logs: Path) -> None:
    """nextpnr's own words in ``logs`` for a resource that ran out (also its placer
    giving up at the utilisation limit: a LUT overflow), as :class:`DoesNotFit` with a
    folding that would fit."""
    text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
    found = re.search(r"Design uses (\d+) (\w+) cells?, but device only has (\d+)", text)
    # Otherwise the utilisation table nextpnr prints before placing ("ICESTORM_LC:
    # 5804/ 5280 109%"): the first cell type over 100%.
    crowded = [(int(u), cell, int(a)) for cell, u, a in
               re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text) if int(u) > int(a)]
    # Or the placer gives up below 100% ("Unable to find legal placement for all cells,
    # design is probably at utilisation limit"): the logic cells are too many to place.
    logic = [(int(u), cell, int(a)) for cell, u, a in
             re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)
             if cell.startswith(board.placed.get("LUT", ("\0",)))]
    name = Path(design.graph.source).name
    if found is not None:
        used, cell, available = int(found[1]), found[2], int(found[3])
    elif crowded:
        used, cell, available = crowded[0]
    elif "Unable to find legal placement" in text and logic:
        used, cell, available = logic[0]
        raise DoesNotFit(
            f"{name} does not fit {board.name}: LUT overflows (nextpnr cannot place "
            f"{used} {cell} of {available}: the utilisation limit); "
            + _suggest(design, board, "LUT", available + 1, available), "LUT", at_limit=True)
    else:
        return
    resource = next((r for r, kinds in board.placed.items() if cell.startswith(kinds)), cell)
    raise DoesNotFit(
        f"{name} does not fit {board.name}: {resource} overflows "
        f"({used} {cell} needed, {available} available); "
        + _suggest(design, board, resource, used, available), resource)
