// Simulation harness for a tfl2rtl top (module tfl2rtl_top): generates the clock, streams
// input vectors from a memory into s_axis, takes m_axis into another memory and times
// every vector, all in HDL, so that the simulator never calls back into a testbench
// during a run.  Needs Verilator's --timing (for the clock).
//
// Protocol (driven by sim/network_tb.py through cocotb):
//   1. Hold rst_in high for a few cycles; set seed_in, stall_in, backpressure_in.
//   2. At a falling clock edge release rst_in and raise start_in.  They reach the
//      harness at the next rising edge (its inputs are registered), and from the edge
//      after that it offers beats.
//   3. Wait for done; read out_mem[], the per-vector timestamps and the counters.
//   Raising rst_in again clears the harness and the design for another run.
//
// in_mem holds VECTORS * IN_SIZE / LANES beats (element k of a beat in bits
// BITS * k .. BITS * k + BITS - 1, little endian), loaded with $readmemh from the file named by +TFL2RTL_INPUTS=<path>.  The
// source keeps s_axis_tvalid up until a beat is taken (AXI4-Stream); whenever it has no
// beat on offer it idles one cycle with probability stall_in / 65536 before the next.
// The sink holds m_axis_tready low in a cycle with probability backpressure_in / 65536.
// Both draw from their own xorshift32 generator seeded from seed_in, advanced once per clock cycle, so a run is reproducible.
//
// Timestamps count rising clock edges since start (the first edge with start high is 1);
// a beat "taken at edge n" had valid and ready high just before edge n.
//   in_first[v] / in_last[v]:   the edges that took vector v's first / last input beat
//   out_first[v] / out_last[v]: the same for its output beats
// tlast_errors counts output beats whose m_axis_tlast disagrees with their position in
// the vector.

`default_nettype none

module axis_harness #(
    parameter int LANES = 1,     // elements per beat on both streams
    parameter int BITS = 8,      // bits per element (16 in a 16x8 model)
    parameter int IN_SIZE = 1,   // elements per input vector (a multiple of LANES)
    parameter int OUT_SIZE = 1,  // elements per output vector (a multiple of LANES)
    parameter int VECTORS = 1,   // input vectors per run
    parameter int HALF_PERIOD = 5  // clock half period in time units
) (
    input  wire         rst_in                  /*verilator public_flat_rw*/,
    input  wire         start_in                /*verilator public_flat_rw*/,
    input  wire  [31:0] seed_in                 /*verilator public_flat_rw*/,
    input  wire  [15:0] stall_in                /*verilator public_flat_rw*/,
    input  wire  [15:0] backpressure_in         /*verilator public_flat_rw*/,
    output logic        done                    /*verilator public_flat_rd*/,
    output logic [31:0] cycle                   /*verilator public_flat_rd*/,
    output logic [31:0] tlast_errors            /*verilator public_flat_rd*/
);
    localparam int IN_BEATS = IN_SIZE / LANES;
    localparam int OUT_BEATS = OUT_SIZE / LANES;
    localparam int IN_TOTAL = VECTORS * IN_BEATS;
    localparam int OUT_TOTAL = VECTORS * OUT_BEATS;
    localparam int VECTOR_BITS = VECTORS > 1 ? $clog2(VECTORS) : 1;

    logic clk  /*verilator public_flat_rd*/;
    initial clk = 1'b0;
    always #HALF_PERIOD clk = ~clk;

    // The inputs are registered before use.  Verilator re-evaluates all combinational
    // logic that depends on a top-level input in every time step; behind registers
    // nothing does (this halves the simulation time of a large design).
    logic rst, start;
    logic [31:0] seed;
    logic [15:0] stall_threshold, backpressure_threshold;
    always_ff @(posedge clk) begin
        rst <= rst_in;
        start <= start_in;
        seed <= seed_in;
        stall_threshold <= stall_in;
        backpressure_threshold <= backpressure_in;
    end

    // Only these and the ports are visible to cocotb (the build turns off Verilator's
    // --public-flat-rw, which would keep every signal of the design observable and
    // slow the simulation down about threefold).
    logic [BITS*LANES-1:0] in_mem [IN_TOTAL];
    logic [BITS*LANES-1:0] out_mem [OUT_TOTAL]  /*verilator public_flat_rd*/;
    logic [31:0] in_first [VECTORS]          /*verilator public_flat_rd*/;
    logic [31:0] in_last [VECTORS]           /*verilator public_flat_rd*/;
    logic [31:0] out_first [VECTORS]         /*verilator public_flat_rd*/;
    logic [31:0] out_last [VECTORS]          /*verilator public_flat_rd*/;

    initial begin
        string path;
        if ($value$plusargs("TFL2RTL_INPUTS=%s", path)) begin
            $readmemh(path, in_mem);
        end else begin
            $display("axis_harness: no +TFL2RTL_INPUTS=<file> given");
            $finish;
        end
    end

    // --- the design --------------------------------------------------------------------
    logic [BITS*LANES-1:0] s_axis_tdata;
    logic s_axis_tvalid, s_axis_tlast;
    wire s_axis_tready;
    wire [BITS*LANES-1:0] m_axis_tdata;
    wire m_axis_tvalid, m_axis_tlast;
    logic m_axis_tready;

    tfl2rtl_top dut (
        .clk(clk),
        .rst(rst),
        .s_axis_tdata(s_axis_tdata),
        .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready),
        .s_axis_tlast(s_axis_tlast),
        .m_axis_tdata(m_axis_tdata),
        .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast)
    );

    // --- random numbers: xorshift32, one step per cycle ---------------------------------
    function automatic logic [31:0] xorshift32(input logic [31:0] x);
        logic [31:0] y;
        y = x ^ (x << 13);
        y = y ^ (y >> 17);
        return y ^ (y << 5);
    endfunction

    logic [31:0] stall_rng, backpressure_rng;
    wire running = start & ~done;

    always_ff @(posedge clk) begin
        if (rst) begin
            // xorshift32 must not start at zero.
            stall_rng <= (seed == 32'd0) ? 32'h1 : seed;
            backpressure_rng <= ((seed ^ 32'h9E3779B9) == 32'd0) ? 32'h2 : seed ^ 32'h9E3779B9;
        end else if (running) begin
            stall_rng <= xorshift32(stall_rng);
            backpressure_rng <= xorshift32(backpressure_rng);
        end
    end

    wire stall_now = stall_rng[31:16] < stall_threshold;
    wire backpressure_now = backpressure_rng[31:16] < backpressure_threshold;

    // --- cycle counter -------------------------------------------------------------------
    always_ff @(posedge clk) begin
        if (rst) cycle <= 32'd0;
        else if (running) cycle <= cycle + 32'd1;
    end
    wire [31:0] edge_now = cycle + 32'd1;  // the number of the coming rising edge

    // --- source ------------------------------------------------------------------------
    logic [31:0] in_beat;       // next beat to offer
    logic [31:0] in_position;   // beat index within its vector of the next beat
    logic [VECTOR_BITS-1:0] in_next_vector;  // vector of the next beat
    logic [VECTOR_BITS-1:0] in_vector;       // vector of the beat on offer
    logic [31:0] in_offered_position;
    wire in_taken = s_axis_tvalid & s_axis_tready;

    always_ff @(posedge clk) begin
        if (rst) begin
            s_axis_tvalid <= 1'b0;
            s_axis_tlast <= 1'b0;
            s_axis_tdata <= '0;
            in_beat <= 32'd0;
            in_position <= 32'd0;
            in_next_vector <= '0;
            in_vector <= '0;
            in_offered_position <= 32'd0;
        end else if (running) begin
            if (in_taken) begin
                if (in_offered_position == 32'd0) in_first[in_vector] <= edge_now;
                if (s_axis_tlast) in_last[in_vector] <= edge_now;
            end
            if (!s_axis_tvalid || in_taken) begin
                if (in_beat < IN_TOTAL && !stall_now) begin
                    s_axis_tvalid <= 1'b1;
                    s_axis_tdata <= in_mem[in_beat];
                    s_axis_tlast <= in_position == IN_BEATS - 1;
                    in_offered_position <= in_position;
                    in_vector <= in_next_vector;
                    in_beat <= in_beat + 32'd1;
                    if (in_position == IN_BEATS - 1) begin
                        in_position <= 32'd0;
                        in_next_vector <= in_next_vector + 1'b1;
                    end else begin
                        in_position <= in_position + 32'd1;
                    end
                end else begin
                    s_axis_tvalid <= 1'b0;
                end
            end
        end
    end

    // --- sink --------------------------------------------------------------------------
    logic [31:0] out_beat;
    logic [31:0] out_position;
    logic [31:0] out_vector;
    wire out_taken = m_axis_tvalid & m_axis_tready;

    always_ff @(posedge clk) begin
        if (rst) begin
            m_axis_tready <= 1'b0;
            out_beat <= 32'd0;
            out_position <= 32'd0;
            out_vector <= 32'd0;
            tlast_errors <= 32'd0;
            done <= 1'b0;
        end else if (running) begin
            m_axis_tready <= !backpressure_now;
            if (out_taken) begin
                out_mem[out_beat] <= m_axis_tdata;
                if (out_position == 32'd0) out_first[out_vector] <= edge_now;
                if (m_axis_tlast != (out_position == OUT_BEATS - 1)) begin
                    tlast_errors <= tlast_errors + 32'd1;
                end
                if (out_position == OUT_BEATS - 1) begin
                    out_last[out_vector] <= edge_now;
                    out_vector <= out_vector + 32'd1;
                    out_position <= 32'd0;
                end else begin
                    out_position <= out_position + 32'd1;
                end
                out_beat <= out_beat + 32'd1;
                if (out_beat == OUT_TOTAL - 1) begin
                    done <= 1'b1;
                    m_axis_tready <= 1'b0;
                end
            end
        end
    end
endmodule

`default_nettype wire
