// Simulation harness for a tfl2rtl board top (module board_top: clk, rst, rx, tx, busy):
// generates the clock and passes the serial lines through, so that a cocotb testbench
// (sim/board_tb.py) only wakes up once per UART bit, never per clock cycle.  Needs
// the --timing option of the simulator (for the clock).
//
// rst_in and rx_in are registered before they reach the design (the simulator re-evaluates
// all logic that depends on a top-level input in every time step; behind a register
// nothing does).  rx_in idles high, like a serial line.

`default_nettype none

module board_harness #(
    parameter int HALF_PERIOD = 5  // clock half period in time units
) (
    input  wire rst_in  /*verilator public_flat_rw*/,
    input  wire rx_in   /*verilator public_flat_rw*/,
    output wire tx      /*verilator public_flat_rd*/,
    output wire busy    /*verilator public_flat_rd*/
);
    logic clk  /*verilator public_flat_rd*/;
    initial clk = 1'b0;
    always #HALF_PERIOD clk = ~clk;

    logic rst, rx;
    initial begin
        rst = 1'b1;
        rx = 1'b1;
    end
    always_ff @(posedge clk) begin
        rst <= rst_in;
        rx <= rx_in;
    end

    board_top dut (
        .clk(clk),
        .rst(rst),
        .rx(rx),
        .tx(tx),
        .busy(busy)
    );
endmodule

`default_nettype wire
