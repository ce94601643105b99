// Simulation models of the PLL primitives tfl2rtl instantiates (tfl2rtl.boards.clocks),
// written from the vendors' documentation, for simulators with timing (Verilator
// --timing, Icarus).  Yosys ships only blackboxes of these cells.
//
// Each model covers exactly the parameter set tfl2rtl uses and stops the simulation
// ($fatal) on any other: other feedback paths, dynamic dividers, phase shifts and the
// secondary outputs are not modelled.  It measures the period of its input clock between
// two rising edges, checks the phase detector, VCO and output frequencies against the
// documented limits, and then generates the output clock with the period the dividers
// give (rounded to the simulator's time precision), starting low (tfl2rtl_pll_core, which
// the three share).  The limits are checked on the measured input to within 0.01% (the
// simulator's rounding of its period).  LOCK rises after LOCK_CYCLES output cycles; the
// real PLLs lock within microseconds, which a board's reset logic waits for the same way.
//
// The limits here are the ones tfl2rtl.boards.clocks.PLL_FAMILIES states.

`timescale 1ns / 1ps
`default_nettype none

// The behaviour the three share: f_pfd = f_in / IN_DIV, f_vco = f_pfd * MUL, f_out =
// f_vco / OUT_DIV, each checked against its documented limits (MHz) on the measured input.
module tfl2rtl_pll_core #(
    parameter NAME = "PLL",
    parameter integer IN_DIV = 1,
    parameter integer MUL = 1,
    parameter integer OUT_DIV = 1,
    parameter real PFD_MIN = 0.0, PFD_MAX = 0.0,
    parameter real VCO_MIN = 0.0, VCO_MAX = 0.0,
    parameter real OUT_MIN = 0.0, OUT_MAX = 0.0,
    parameter integer LOCK_CYCLES = 16
) (
    input  wire clk_in,
    input  wire run,     // low: the PLL held in reset (its output runs, LOCK does not rise)
    output reg  clk_out,
    output reg  lock
);
    // The input period is measured at the simulator's time precision: limits hold to
    // within that.
    localparam real LO = 0.9999, HI = 1.0001;
    real last, period, pfd, vco, half;
    integer cycles;

    initial begin
        clk_out = 1'b0;
        lock = 1'b0;
        last = -1.0;
        period = 0.0;
        cycles = 0;
    end

    always @(posedge clk_in) begin
        if (last >= 0.0 && period == 0.0) begin
            period = $realtime - last;  // ns
            pfd = 1000.0 / period / IN_DIV;  // MHz
            vco = pfd * MUL;
            if (pfd < PFD_MIN * LO || pfd > PFD_MAX * HI || vco < VCO_MIN * LO
                    || vco > VCO_MAX * HI || vco / OUT_DIV < OUT_MIN * LO
                    || vco / OUT_DIV > OUT_MAX * HI)
                $fatal(1, "%s model: f_pfd %f MHz, f_vco %f MHz, f_out %f MHz outside the documented limits", NAME, pfd, vco, vco / OUT_DIV);
            half = period * IN_DIV * OUT_DIV / MUL / 2.0;
        end
        last = $realtime;
    end

    initial begin
        wait (period > 0.0);
        forever begin
            #(half) clk_out = ~clk_out;
            if (clk_out && run) begin
                cycles = cycles + 1;
                if (cycles >= LOCK_CYCLES) lock = 1'b1;
            end
        end
    end
endmodule

// Lattice iCE40 SB_PLL40_PAD, FEEDBACK_PATH "SIMPLE" (TN1251):
// f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ), f_pfd = f_in / (DIVR + 1) in
// [10, 133] MHz, f_vco = f_out * 2**DIVQ in [533, 1066] MHz, f_out in [16, 275] MHz.
module SB_PLL40_PAD (
    input  wire       PACKAGEPIN,
    output wire       PLLOUTCORE,
    output wire       PLLOUTGLOBAL,
    input  wire       EXTFEEDBACK,
    input  wire [7:0] DYNAMICDELAY,
    output wire       LOCK,
    input  wire       BYPASS,
    input  wire       RESETB,
    input  wire       LATCHINPUTVALUE,
    output wire       SDO,
    input  wire       SDI,
    input  wire       SCLK
);
    parameter FEEDBACK_PATH = "SIMPLE";
    parameter DELAY_ADJUSTMENT_MODE_FEEDBACK = "FIXED";
    parameter DELAY_ADJUSTMENT_MODE_RELATIVE = "FIXED";
    parameter SHIFTREG_DIV_MODE = 1'b0;
    parameter FDA_FEEDBACK = 4'b0000;
    parameter FDA_RELATIVE = 4'b0000;
    parameter PLLOUT_SELECT = "GENCLK";
    parameter DIVR = 4'b0000;
    parameter DIVF = 7'b0000000;
    parameter DIVQ = 3'b000;
    parameter FILTER_RANGE = 3'b000;
    parameter ENABLE_ICEGATE = 1'b0;
    parameter TEST_MODE = 1'b0;
    parameter EXTERNAL_DIVIDE_FACTOR = 1;

    initial
        if (FEEDBACK_PATH != "SIMPLE" || PLLOUT_SELECT != "GENCLK" || ENABLE_ICEGATE != 0
                || TEST_MODE != 0 || DIVQ < 1 || DIVQ > 6)
            $fatal(1, "SB_PLL40_PAD model: only FEEDBACK_PATH SIMPLE, PLLOUT_SELECT GENCLK, DIVQ 1..6 are modelled");

    wire out;
    assign PLLOUTCORE = out;
    assign PLLOUTGLOBAL = out;
    assign SDO = 1'b0;
    tfl2rtl_pll_core #(
        .NAME("SB_PLL40_PAD"), .IN_DIV(DIVR + 1), .MUL(DIVF + 1), .OUT_DIV(1 << DIVQ),
        .PFD_MIN(10.0), .PFD_MAX(133.0), .VCO_MIN(533.0), .VCO_MAX(1066.0),
        .OUT_MIN(16.0), .OUT_MAX(275.0)
    ) core (.clk_in(PACKAGEPIN), .run(RESETB && !BYPASS), .clk_out(out), .lock(LOCK));
endmodule

// Lattice ECP5 EHXPLLL with FEEDBK_PATH "CLKOP" (CLKFB wired to CLKOP; TN1263):
// f_out = f_in * CLKFB_DIV / CLKI_DIV, f_pfd = f_in / CLKI_DIV in [3.125, 400] MHz,
// f_vco = f_out * CLKOP_DIV in [400, 800] MHz, f_out in [3.125, 400] MHz.  Only CLKOP
// is modelled, with no phase shift (CLKOP_CPHASE = CLKOP_DIV - 1, CLKOP_FPHASE = 0).
module EHXPLLL (
    input  wire CLKI, CLKFB,
    input  wire PHASESEL1, PHASESEL0, PHASEDIR, PHASESTEP, PHASELOADREG,
    input  wire STDBY, PLLWAKESYNC,
    input  wire RST, ENCLKOP, ENCLKOS, ENCLKOS2, ENCLKOS3,
    output wire CLKOP, CLKOS, CLKOS2, CLKOS3,
    output wire LOCK,
    output wire INTLOCK, REFCLK, CLKINTFB
);
    parameter CLKI_DIV = 1;
    parameter CLKFB_DIV = 1;
    parameter CLKOP_DIV = 8;
    parameter CLKOS_DIV = 8;
    parameter CLKOS2_DIV = 8;
    parameter CLKOS3_DIV = 8;
    parameter CLKOP_ENABLE = "ENABLED";
    parameter CLKOS_ENABLE = "DISABLED";
    parameter CLKOS2_ENABLE = "DISABLED";
    parameter CLKOS3_ENABLE = "DISABLED";
    parameter CLKOP_CPHASE = 0;
    parameter CLKOS_CPHASE = 0;
    parameter CLKOS2_CPHASE = 0;
    parameter CLKOS3_CPHASE = 0;
    parameter CLKOP_FPHASE = 0;
    parameter CLKOS_FPHASE = 0;
    parameter CLKOS2_FPHASE = 0;
    parameter CLKOS3_FPHASE = 0;
    parameter FEEDBK_PATH = "CLKOP";
    parameter CLKOP_TRIM_POL = "RISING";
    parameter CLKOP_TRIM_DELAY = 0;
    parameter CLKOS_TRIM_POL = "RISING";
    parameter CLKOS_TRIM_DELAY = 0;
    parameter OUTDIVIDER_MUXA = "DIVA";
    parameter OUTDIVIDER_MUXB = "DIVB";
    parameter OUTDIVIDER_MUXC = "DIVC";
    parameter OUTDIVIDER_MUXD = "DIVD";
    parameter PLL_LOCK_MODE = 0;
    parameter PLL_LOCK_DELAY = 200;
    parameter STDBY_ENABLE = "DISABLED";
    parameter REFIN_RESET = "DISABLED";
    parameter SYNC_ENABLE = "DISABLED";
    parameter INT_LOCK_STICKY = "ENABLED";
    parameter DPHASE_SOURCE = "DISABLED";
    parameter PLLRST_ENA = "DISABLED";
    parameter INTFB_WAKE = "DISABLED";

    initial
        if (FEEDBK_PATH != "CLKOP" || CLKOP_ENABLE != "ENABLED" || CLKOS_ENABLE != "DISABLED"
                || CLKOS2_ENABLE != "DISABLED" || CLKOS3_ENABLE != "DISABLED"
                || CLKOP_CPHASE != CLKOP_DIV - 1 || CLKOP_FPHASE != 0
                || OUTDIVIDER_MUXA != "DIVA" || DPHASE_SOURCE != "DISABLED"
                || PLLRST_ENA != "DISABLED" || STDBY_ENABLE != "DISABLED"
                || CLKI_DIV < 1 || CLKI_DIV > 128 || CLKFB_DIV < 1 || CLKFB_DIV > 80
                || CLKOP_DIV < 1 || CLKOP_DIV > 128)
            $fatal(1, "EHXPLLL model: only CLKOP fed back, without phase shift, with dividers in range, is modelled");

    assign {CLKOS, CLKOS2, CLKOS3, INTLOCK, REFCLK, CLKINTFB} = 6'b0;
    tfl2rtl_pll_core #(
        .NAME("EHXPLLL"), .IN_DIV(CLKI_DIV), .MUL(CLKFB_DIV * CLKOP_DIV), .OUT_DIV(CLKOP_DIV),
        .PFD_MIN(3.125), .PFD_MAX(400.0), .VCO_MIN(400.0), .VCO_MAX(800.0),
        .OUT_MIN(3.125), .OUT_MAX(400.0)
    ) core (.clk_in(CLKI), .run(!RST), .clk_out(CLKOP), .lock(LOCK));
endmodule

// Gowin rPLL with internal feedback and static dividers (UG286; DS117):
// f_out = f_in * (FBDIV_SEL + 1) / (IDIV_SEL + 1), f_pfd = f_in / (IDIV_SEL + 1) in
// [3, 400] MHz, f_vco = f_out * ODIV_SEL in [400, 1000] MHz, f_out in [3.125, 500] MHz.
// Only CLKOUT is modelled.
module rPLL (CLKOUT, CLKOUTP, CLKOUTD, CLKOUTD3, LOCK, CLKIN, CLKFB, FBDSEL, IDSEL, ODSEL,
             DUTYDA, PSDA, FDLY, RESET, RESET_P);
    input  wire CLKIN, CLKFB, RESET, RESET_P;
    input  wire [5:0] FBDSEL, IDSEL, ODSEL;
    input  wire [3:0] PSDA, FDLY, DUTYDA;
    output wire CLKOUT, CLKOUTP, CLKOUTD, CLKOUTD3;
    output wire LOCK;

    parameter FCLKIN = "100.0";
    parameter DYN_IDIV_SEL = "false";
    parameter IDIV_SEL = 0;
    parameter DYN_FBDIV_SEL = "false";
    parameter FBDIV_SEL = 0;
    parameter DYN_ODIV_SEL = "false";
    parameter ODIV_SEL = 8;
    parameter PSDA_SEL = "0000";
    parameter DYN_DA_EN = "false";
    parameter DUTYDA_SEL = "1000";
    parameter CLKOUT_FT_DIR = 1'b1;
    parameter CLKOUTP_FT_DIR = 1'b1;
    parameter CLKOUT_DLY_STEP = 0;
    parameter CLKOUTP_DLY_STEP = 0;
    parameter CLKFB_SEL = "internal";
    parameter CLKOUT_BYPASS = "false";
    parameter CLKOUTP_BYPASS = "false";
    parameter CLKOUTD_BYPASS = "false";
    parameter DYN_SDIV_SEL = 2;
    parameter CLKOUTD_SRC = "CLKOUT";
    parameter CLKOUTD3_SRC = "CLKOUT";
    parameter DEVICE = "GW1N-1";

    initial
        if (DYN_IDIV_SEL != "false" || DYN_FBDIV_SEL != "false" || DYN_ODIV_SEL != "false"
                || CLKFB_SEL != "internal" || CLKOUT_BYPASS != "false" || DYN_DA_EN != "false"
                || IDIV_SEL < 0 || IDIV_SEL > 63 || FBDIV_SEL < 0 || FBDIV_SEL > 63
                || !(ODIV_SEL == 2 || ODIV_SEL == 4 || ODIV_SEL == 8 || ODIV_SEL == 16
                     || ODIV_SEL == 32 || ODIV_SEL == 48 || ODIV_SEL == 64 || ODIV_SEL == 80
                     || ODIV_SEL == 96 || ODIV_SEL == 112 || ODIV_SEL == 128))
            $fatal(1, "rPLL model: only static dividers with internal feedback are modelled");

    assign {CLKOUTP, CLKOUTD, CLKOUTD3} = 3'b0;
    tfl2rtl_pll_core #(
        .NAME("rPLL"), .IN_DIV(IDIV_SEL + 1), .MUL((FBDIV_SEL + 1) * ODIV_SEL),
        .OUT_DIV(ODIV_SEL), .PFD_MIN(3.0), .PFD_MAX(400.0), .VCO_MIN(400.0),
        .VCO_MAX(1000.0), .OUT_MIN(3.125), .OUT_MAX(500.0)
    ) core (.clk_in(CLKIN), .run(!RESET && !RESET_P), .clk_out(CLKOUT), .lock(LOCK));
endmodule

`default_nettype wire
