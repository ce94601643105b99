// Simulation harness for a tfl2rtl board top (module board_top: clk, rst, rx, tx, busy):
// generates the clock and plays the host's side of the serial line a byte at a time, so
// that a cocotb testbench (sim/board_tb.py) wakes up once per byte, never per bit or per
// clock cycle.  Needs the --timing option of the simulator (for the clock).
//
// Host to board: each change of host_strobe sends host_byte on rx (start bit, 8 data
// bits LSB first, stop bit, DIVISOR clock cycles each), starting on the next rising clock
// edge; the next byte may come 10 * DIVISOR + 1 cycles later.  rx_in may also drive the line directly (it idles high, like a
// serial line; the two are and-ed).  Board to host: every byte on tx whose stop bit is
// high appears on device_byte as device_count goes up by one (sampled in the middle of
// each bit).
//
// For a board top on the FPGA's PLL (tfl2rtl.boards.build.BoardDesign, simulated with
// rtl_templates/pll_models.v), clk is the board's oscillator (HALF_PERIOD in ns, a real
// number) and rst its reset button; the design's own clock comes out of the PLL model, so
// the host's UART here (DIVISOR oscillator cycles a bit) and the board's run on unrelated
// clocks, as they do on a desk.
//
// rst_in and the rx line are registered before they reach the design (the simulator
// re-evaluates all logic that depends on a top-level input in every time step; behind a
// register nothing does).

`default_nettype none

module board_harness #(
    parameter real HALF_PERIOD = 5.0,  // clock half period in time units
    parameter int DIVISOR = 4       // clock cycles per UART bit
) (
    input  wire       rst_in      /*verilator public_flat_rw*/,
    input  wire       rx_in       /*verilator public_flat_rw*/,
    input  wire [7:0] host_byte   /*verilator public_flat_rw*/,
    input  wire       host_strobe /*verilator public_flat_rw*/,
    output logic [7:0]  device_byte  /*verilator public_flat_rd*/,
    output logic [31:0] device_count /*verilator public_flat_rd*/,
    output wire       tx          /*verilator public_flat_rd*/,
    output wire       busy        /*verilator public_flat_rd*/
);
    logic clk  /*verilator public_flat_rd*/;
    initial clk = 1'b0;
    always #HALF_PERIOD clk = ~clk;

    localparam int TW = $clog2(DIVISOR + 1);  // the bit timers' widths
    localparam int RW = $clog2(2 * DIVISOR + 1);

    // The host's transmitter.
    logic [9:0] frame;
    logic [3:0] bits_left;
    logic [TW - 1:0] tick;
    logic strobe_seen;
    initial begin
        frame = 10'h3ff;
        bits_left = 4'd0;
        tick = '0;
        strobe_seen = 1'b0;
    end
    always_ff @(posedge clk) begin
        if (bits_left == 4'd0) begin
            if (host_strobe != strobe_seen) begin
                strobe_seen <= host_strobe;
                frame <= {1'b1, host_byte, 1'b0};
                bits_left <= 4'd10;
                tick <= '0;
            end
        end else if (tick == TW'(DIVISOR - 1)) begin
            tick <= '0;
            frame <= {1'b1, frame[9:1]};
            bits_left <= bits_left - 4'd1;
        end else begin
            tick <= tick + TW'(1);
        end
    end
    wire line = bits_left == 4'd0 ? 1'b1 : frame[0];

    logic rst, rx;
    initial begin
        rst = 1'b1;
        rx = 1'b1;
    end
    always_ff @(posedge clk) begin
        rst <= rst_in;
        rx <= rx_in & line;
    end

    // The host's receiver.
    logic [3:0] rx_bit;  // 0: waiting for a start bit; 1..9 the data and stop bits
    logic [RW - 1:0] rx_tick;
    logic [7:0] shift;
    initial begin
        rx_bit = 4'd0;
        rx_tick = '0;
        device_byte = 8'd0;
        device_count = 32'd0;
    end
    always_ff @(posedge clk) begin
        if (rx_bit == 4'd0) begin
            if (!tx) begin  // a start bit: sample its middle, then every DIVISOR cycles
                rx_bit <= 4'd1;
                rx_tick <= RW'(DIVISOR / 2 + DIVISOR - 1);
            end
        end else if (rx_tick != '0) begin
            rx_tick <= rx_tick - RW'(1);
        end else if (rx_bit == 4'd9) begin
            rx_bit <= 4'd0;
            if (tx) begin
                device_byte <= shift;
                device_count <= device_count + 32'd1;
            end
        end else begin
            shift <= {tx, shift[7:1]};
            rx_bit <= rx_bit + 4'd1;
            rx_tick <= RW'(DIVISOR - 1);
        end
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
