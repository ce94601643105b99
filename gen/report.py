"""``tfl2rtl inspect``: what a person needs to write the forward pass by hand."""

from __future__ import annotations

import numpy as np

from . import golden, ir

__all__ = ["describe", "format_text", "format_schedule"]


def _range(values) -> int | list[int]:
    values = np.asarray(values).reshape(-1)
    lo, hi = int(values.min()), int(values.max())
    return lo if lo == hi else [lo, hi]


def _tensor(t: ir.Tensor) -> dict:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
            "scale": None if t.scale is None else float(t.scale),
            "zero_point": t.zero_point, "bytes": t.nbytes}


def _requant(r: ir.Requant) -> dict:
    return {"multiplier": _range(r.multiplier), "shift": _range(r.shift),
            "real_scale": [float(r.real_scale.min()), float(r.real_scale.max())]
            if r.per_channel else float(r.real_scale[0]),
            "per_channel": r.per_channel}


def _scales(values) -> float | list[float]:
    values = np.asarray(values, np.float64).reshape(-1)
    lo, hi = float(values.min()), float(values.max())
    return lo if lo == hi else [lo, hi]


def _weighted_quantization(graph: ir.Graph, node) -> dict:
    """A weighted layer's numbers in the notation of the quantization paper (Jacob et al.
    2018, TFLite's): ``real = S * (q - Z)`` with 1 the input, 2 the weights, 3 the output;
    ``M = S1 * S2 / S3`` is ``multiplier * 2**(shift - 31)`` (a range when per channel),
    and ``acc = sum((q1 - Z1) * (q2 - Z2)) + bias`` is what is scaled by ``M``."""
    inp, out = graph.tensors[node.input], graph.tensors[node.output]
    s2 = node.weight_scales if node.weight_scales is not None else np.zeros(1)
    return {"S1": float(inp.scale), "S2": _scales(s2), "S3": float(out.scale),
            "Z1": inp.zero_point, "Z2": -node.filter_offset, "Z3": out.zero_point,
            "M": _scales(node.requant.real_scale),
            "multiplier": _range(node.requant.multiplier), "shift": _range(node.requant.shift),
            "accumulator": node.accumulator}


def describe(graph: ir.Graph, profile: str | None = None) -> dict:
    """A JSON-ready description of the lowered model, layer by layer.

    ``profile`` names the golden profile whose arithmetic each layer's ``arithmetic``
    entry describes: the runtime that runs it and what its requantization uses (for
    ``litert``, XNNPACK's float32 scales; for ``tflm`` the integer multiplier and shift
    listed under ``requant``).  It defaults to :func:`tfl2rtl.golden.default_profile`."""
    prepared = golden.get_profile(profile or golden.default_profile(graph)).prepare(graph)
    layers = []
    for i, node in enumerate(graph.nodes):
        layer = {
            "index": i, "op": node.op, "tflite_op": node.tflite_op,
            "tflite_op_index": node.tflite_op_index,
            "inputs": [_tensor(graph.tensors[n]) for n in node.inputs],
            "output": _tensor(graph.tensors[node.output]), "macs": node.macs,
            "weight_bytes": node.weight_bytes,
        }
        for key in ("requant", "input1_requant", "input2_requant", "output_requant"):
            if hasattr(node, key):
                layer[key] = _requant(getattr(node, key))
        for key in ("input_offset", "output_offset", "act_min", "act_max", "acc_bits",
                    "stride", "dilation", "padding", "depth_multiplier", "filter",
                    "input1_offset", "input2_offset", "left_shift", "axis", "pad_value",
                    "input_multiplier", "input_left_shift", "diff_min", "beta",
                    "input_zero_point", "output_zero_point", "flip_sign", "function"):
            if hasattr(node, key):
                value = getattr(node, key)
                layer[key] = list(value) if isinstance(value, tuple) else value
        if hasattr(node, "weights"):
            layer["weights_shape"] = list(node.weights.shape)
            layer["quantization"] = _weighted_quantization(graph, node)
        out = graph.tensors[node.output]
        if out.value_range is not None:
            layer["output_range"] = list(out.value_range)
        layer["arithmetic"] = prepared.describe(node)
        layers.append(layer)
    return {
        "model": graph.source, "mode": graph.mode, "profile": prepared.name,
        "profile_description": prepared.description,
        "inputs": [_tensor(graph.tensors[n]) for n in graph.inputs],
        "outputs": [_tensor(graph.tensors[n]) for n in graph.outputs],
        "macs": graph.macs, "weight_bytes": graph.weight_bytes, "layers": layers,
    }


def _fmt(v) -> str:
    if isinstance(v, list):
        return "..".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _q(t: dict) -> str:
    if t["scale"] is None:
        return t["dtype"]
    return f"{t['dtype']} s={t['scale']:.6g} zp={t['zero_point']}"


def format_text(info: dict) -> str:
    """A readable multi-line rendering of :func:`describe`'s result."""
    lines = [f"model: {info['model']}", f"mode:  {info['mode']}"]
    if "profile" in info:
        lines.append(f"profile: {info['profile']} ({info['profile_description']})")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            lines.append(f"{kind[:-1]:6} {t['name']}: shape {tuple(t['shape'])} {_q(t)}, "
                         f"{t['bytes']} bytes")
    lines.append(f"MACs {info['macs']:,}  weights {info['weight_bytes']:,} bytes")
    for layer in info["layers"]:
        out = layer["output"]
        head = (f"[{layer['index']:>2}] {layer['op']:<17} -> {tuple(out['shape'])} {_q(out)}")
        lines.append(head)
        ins = ", ".join(f"{tuple(t['shape'])} {_q(t)}" for t in layer["inputs"])
        lines.append(f"       in: {ins}")
        details = []
        for key in ("requant", "input1_requant", "input2_requant", "output_requant"):
            if key in layer:
                r = layer[key]
                tag = "" if key == "requant" else key.replace("_requant", "") + " "
                details.append(f"{tag}multiplier {_fmt(r['multiplier'])} shift "
                               f"{_fmt(r['shift'])} (scale {_fmt(r['real_scale'])}"
                               f"{', per channel' if r['per_channel'] else ''})")
        for key in ("input_offset", "input1_offset", "input2_offset", "left_shift",
                    "output_offset", "acc_bits", "stride", "dilation", "padding",
                    "depth_multiplier", "filter", "axis", "pad_value", "input_multiplier",
                    "input_left_shift", "diff_min", "input_zero_point", "output_zero_point",
                    "flip_sign", "function"):
            if key in layer:
                value = layer[key]
                if key in ("stride", "dilation", "filter"):
                    value = "x".join(str(v) for v in value)
                elif key == "padding":
                    value = "top {} left {} bottom {} right {}".format(*value)
                details.append(f"{key} {_fmt(value)}")
        if "act_min" in layer:
            details.append(f"clamp [{layer['act_min']}, {layer['act_max']}]")
        if layer["macs"]:
            details.append(f"MACs {layer['macs']:,} weights {layer['weight_bytes']:,} B")
        for i in range(0, len(details), 4):
            lines.append("       " + "; ".join(details[i:i + 4]))
        if "quantization" in layer:
            q = layer["quantization"]
            lines.append(
                f"       S1 {_fmt(q['S1'])} S2 {_fmt(q['S2'])} S3 {_fmt(q['S3'])}; "
                f"Z1 {q['Z1']} Z2 {q['Z2']} Z3 {q['Z3']}; M = S1*S2/S3 {_fmt(q['M'])} = "
                f"{_fmt(q['multiplier'])} * 2^({_fmt(q['shift'])} - 31); "
                f"{q['accumulator']} acc = sum((q1 - Z1) * (q2 - Z2)) + bias")
        arithmetic = layer.get("arithmetic")
        if arithmetic:
            parts = [f"{k} {_fmt(v)}" for k, v in arithmetic.items() if k != "runtime"]
            lines.append(f"       {info['profile']}: {arithmetic['runtime']}"
                         + "".join(f"; {p}" for p in parts))
    return "\n".join(lines)


def format_schedule(schedule: dict) -> str:
    """A sequential engine's schedule (:meth:`tfl2rtl.design.Design.schedule_summary`)
    as a table: per layer, its shape (padded where the unit pads it), cycles, MACs, MACs
    per cycle (with activation tensors also the layer's pixels), bytes of weights the
    unit reads and how many from flash, and those bytes
    per cycle at the layer's compute speed (the rate the weights must come at for the
    flash not to slow it down), against what the flash gives."""
    pe, simd, lanes = schedule["pe"], schedule["simd"], schedule["requant_lanes"]
    tensors = schedule.get("tensors", False)
    rows = [("node", "op", "out x in", "padded", *(("pixels",) if tensors else ()),
             "cycles", "MACs", "MACs/cycle", "weight B", "from flash", "B/cycle")]
    for layer in schedule["layers"]:
        rows.append((str(layer["node"]), layer["op"], "x".join(map(str, layer["shape"])),
                     "x".join(map(str, layer["padded_shape"])),
                     *((f"{layer['pixels']:,}",) if tensors else ()), f"{layer['cycles']:,}",
                     f"{layer['macs']:,}", f"{layer['macs_per_cycle']:.2f}",
                     f"{layer['weight_bytes']:,}", f"{layer['flash_bytes']:,}",
                     f"{layer['weight_bytes_per_cycle']:.2f}"))
    cycles = schedule["cycles_per_inference"]
    macs = sum(layer["macs"] for layer in schedule["layers"])
    rows.append(("total", "", "", "", *(("",) if tensors else ()), f"{cycles:,}", f"{macs:,}",
                 f"{macs / cycles:.2f}", f"{schedule['weight_bytes']:,}",
                 f"{schedule['flash_bytes']:,}", f"{schedule['weight_bytes'] / cycles:.2f}"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    interval = schedule["requant_interval"]
    lines = [f"schedule: one {pe} x {simd} unit ({pe * simd} multipliers), {lanes} "
             f"requantizer lane{'s' if lanes > 1 else ''} (a beat every {interval} "
             f"cycle{'s' if interval > 1 else ''}); the layers take at most {cycles:,} "
             "cycles per inference"]
    lines += ["  " + "  ".join(cell.ljust(w) if k < 2 else cell.rjust(w)
                               for k, (cell, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    for layer in schedule["layers"]:
        if layer.get("pooling"):
            pool = layer["pooling"]
            lines.append(f"node {pool['node']} ({pool['op']}) pools node {layer['node']}'s "
                         "outputs, read back from the activation memory as windows (its "
                         f"cycles count the pool's: {layer['boundary_wait']:,} cycles of "
                         "wait after the layer)")
    if tensors:
        lines.append("the layers read their tensors from an activation memory of "
                     f"{schedule['activation_buffer_beats']:,} beats of {simd} (a convolution "
                     "a patch per output pixel: the unit reads its weight rows once a pixel, "
                     "so 'weight B' counts them each time); the next input waits at most "
                     f"{schedule['input_wait']:,} cycles more for its region")
    for stage in schedule["tail"]:
        lines.append(f"then node {stage['node']} ({stage['op']}), a stage of its own: "
                     f"{stage['cycles']:,} cycles per inference, alongside the unit")
    if schedule.get("weights_copied"):
        lines.append(f"weights: {schedule['weight_rows'] * pe * simd:,} bytes copied from "
                     "flash into the unit's memory at start-up "
                     f"({schedule['copy_cycles']:,} cycles, before the first inference), "
                     "none from flash per inference")
    elif schedule["weights_in"] == "flash":
        lines.append(f"weights: {schedule['flash_bytes']:,} bytes from flash, "
                     f"{schedule['flash_bytes_per_cycle']:.2f} bytes per cycle (a layer "
                     "that needs more waits for its weights: its cycles count the wait)")
    else:
        lines.append(f"weights: {schedule['weight_rows'] * pe * simd:,} bytes on chip (in "
                     "the design's ROM), none from flash")
    return "\n".join(lines)

