// Behavioural model of a Winbond W25Q128JV SPI NOR flash (16 MiB; SIZE_BYTES smaller for
// tests), written from the datasheet's command descriptions, for Verilator (--timing not
// needed by the model itself; it has no delays).  It models what tfl2rtl's readers use
// and refuses everything else: an unmodelled command or condition stops the simulation
// with one line from $error naming it, then $fatal.
//
// Memory: SIZE_BYTES bytes, all 0xFF (erased) at time 0, then loaded with $readmemh from
// the file named by the plusarg +TFL2RTL_FLASH=<path> (one byte per line, two hex
// digits; @address lines allowed).  Without the plusarg every byte reads 0xFF.
//
// Bus: SPI mode 0 only.  The model samples the host's lines on SCK's rising edge and
// changes its own on SCK's falling edge; it releases them (flash_oe = 0) when CS# goes
// high.  The host drives all four lines or none (host_oe); IO0 is DI, IO1 is DO, IO2 is
// WP# and IO3 is HOLD# while QE = 0.  Command and address bits are MSB first on IO0.
//
// Commands (each one transaction, CS# low to CS# high):
//   0xAB  Release Power-down.  The model starts powered up and has no power-down, so it
//         only accepts it (no device ID: clocks after the command byte are refused).
//   0x50  Write Enable for Volatile Status Register: lets the next transaction be 0x31.
//   0x31  Write Status Register-2, volatile: one data byte, which must come right after
//         a 0x50 transaction; it takes effect at CS# high.  Only QE (bit 1) is modelled:
//         other bits set are refused.
//   0x35  Read Status Register-2 on IO1 (QE in bit 1), repeated while clocked.
//   0x03  Read Data: 24 address bits, data on IO1 from the falling edge after the last
//         address bit, no dummy clocks.
//   0x0B  Fast Read: 24 address bits, 8 dummy clocks, data on IO1.
//   0x3B  Fast Read Dual Output: as 0x0B, data on IO1:IO0 (IO1 the higher bit; bits 7, 6
//         first).
//   0x6B  Fast Read Quad Output: as 0x0B, data on IO3..IO0 (high nibble first, IO3 its
//         MSB); refused while QE = 0.
//   The first data bit of the fast reads appears on the falling edge after the last
//   dummy clock's rising edge.  Reads continue through the addresses while clocked,
//   wrapping from the last byte to byte 0.
//
// Refused (one line from $error, then $fatal): any other command byte; 0x6B while
// QE = 0; 0x31 not preceded by 0x50 in the previous transaction; CS# falling while SCK
// is high (mode 3); the host and the flash driving at once at an SCK edge (such as a
// host that drives during a read's data phase); the host not driving IO0 while the
// flash samples a command, address or data bit; HOLD# (IO3) driven low while QE = 0;
// clocks after 0xAB or 0x50, or more than one byte after 0x31; a 0x31 transaction cut
// short.

`default_nettype none

module spi_flash_model #(parameter int SIZE_BYTES = 16777216) (
    input  wire        sck,
    input  wire        cs_n,
    input  wire [3:0]  host_o,   // what the host drives on IO0..IO3
    input  wire        host_oe,  // the host drives all four lines
    output logic [3:0] flash_o,  // what the flash drives
    output logic [3:0] flash_oe  // per line: the flash drives it
);
    localparam int INDEX_BITS = SIZE_BYTES > 1 ? $clog2(SIZE_BYTES) : 1;
    logic [7:0] mem [SIZE_BYTES];

    initial begin
        string path;
        for (int a = 0; a < SIZE_BYTES; a++) mem[a] = 8'hFF;
        if ($value$plusargs("TFL2RTL_FLASH=%s", path)) $readmemh(path, mem);
    end

    task automatic refuse(input string what);
        $error("spi_flash_model: %s", what);
        $fatal(1, "spi_flash_model: stopped on what it does not model");
    endtask

    // --- state, kept by the rising-edge process -----------------------------------------
    logic [31:0] rises;         // rising SCK edges in this transaction so far
    logic [7:0]  command;       // shifted in MSB first; complete after 8 rising edges
    logic [23:0] address;       // shifted in MSB first; complete after 32 rising edges
    logic [6:0]  sr2_in;        // the data byte of a 0x31, its last 7 bits
    logic        qe;            // Status Register-2 bit 1 (Quad Enable), volatile
    logic        volatile_wen;  // the previous transaction was a complete 0x50
    initial begin
        rises = 32'd0;
        command = 8'd0;
        address = 24'd0;
        sr2_in = 7'd0;
        qe = 1'b0;
        volatile_wen = 1'b0;
    end

    wire [7:0] shifted_command = {command[6:0], host_o[0]};
    wire [7:0] shifted_sr2 = {sr2_in, host_o[0]};
    // IO1 and IO2 (WP#) are never read: the model has no quad input and no protection.
    wire unused_host_io = &host_o[2:1];

    always @(negedge cs_n) begin
        if (sck) refuse("CS# fell while SCK was high: only SPI mode 0 is modelled");
    end

    always @(posedge sck or posedge cs_n) begin
        if (cs_n) begin
            // The end of a transaction: a 0x31 writes at CS# high.
            if (rises != 32'd0 && command == 8'h31) begin
                if (rises != 32'd16) refuse($sformatf(
                    "0x31 (Write Status Register-2) ended after %0d clocks, not 16", rises));
                qe <= sr2_in[1];
            end
            volatile_wen <= rises == 32'd8 && command == 8'h50;
            rises <= 32'd0;
        end else begin
            rises <= rises + 32'd1;
            if (host_oe && flash_oe != 4'b0) refuse($sformatf(
                "the host and the flash drive the same lines at once (command 0x%02h, clock %0d)",
                command, rises + 32'd1));
            if (host_oe && !qe && !host_o[3])
                refuse("HOLD# (IO3) driven low while QE = 0: hold is not modelled");
            if (rises < 32'd8) begin
                if (!host_oe) refuse("the host does not drive IO0 during a command byte");
                command <= shifted_command;
                if (rises == 32'd7) begin
                    case (shifted_command)
                        8'hAB, 8'h50, 8'h35, 8'h03, 8'h0B, 8'h3B: ;
                        8'h31: if (!volatile_wen) refuse(
                            "0x31 (Write Status Register-2) not preceded by 0x50 (Volatile SR Write Enable)");
                        8'h6B: if (!qe) refuse(
                            "0x6B (Fast Read Quad Output) while QE = 0: set QE with 0x50, 0x31 first");
                        default: refuse($sformatf("unknown command 0x%02h", shifted_command));
                    endcase
                end
            end else begin
                case (command)
                    8'hAB, 8'h50: refuse($sformatf(
                        "clocks after command 0x%02h are not modelled", command));
                    8'h31: begin
                        if (rises >= 32'd16)
                            refuse("0x31 (Write Status Register-2) takes one data byte, not more");
                        if (!host_oe) refuse("the host does not drive IO0 during 0x31's data byte");
                        sr2_in <= shifted_sr2[6:0];
                        if (rises == 32'd15 && (shifted_sr2 & 8'hFD) != 8'h00) refuse($sformatf(
                            "0x31 sets Status Register-2 bits other than QE: 0x%02h",
                            shifted_sr2));
                    end
                    8'h03, 8'h0B, 8'h3B, 8'h6B: begin
                        if (rises < 32'd32) begin
                            if (!host_oe) refuse("the host does not drive IO0 during the address");
                            address <= {address[22:0], host_o[0]};
                        end
                    end
                    default: ;  // 0x35: the flash talks
                endcase
            end
        end
    end

    // --- outputs, changed by the falling-edge process ---------------------------------
    // The first falling edge that drives data follows rising edge DATA_START (all the
    // command, address and dummy bits), the k-th data unit (bit, pair or nibble) the
    // (DATA_START + k)-th.
    function automatic int unsigned data_start(input logic [7:0] cmd);
        case (cmd)
            8'h35: return 8;
            8'h03: return 32;
            default: return 40;  // 0x0B, 0x3B, 0x6B: 8 command, 24 address, 8 dummy
        endcase
    endfunction

    function automatic int unsigned data_width(input logic [7:0] cmd);
        case (cmd)
            8'h3B: return 2;
            8'h6B: return 4;
            default: return 1;
        endcase
    endfunction

    wire reading = command == 8'h35 || command == 8'h03 || command == 8'h0B
                   || command == 8'h3B || command == 8'h6B;

    initial begin
        flash_o = 4'b0;
        flash_oe = 4'b0;
    end

    always @(negedge sck or posedge cs_n) begin
        if (cs_n) begin
            flash_oe <= 4'b0;
            flash_o <= 4'b0;
        end else if (reading && rises >= data_start(command)) begin
            int unsigned unit, width, per_byte;
            logic [INDEX_BITS-1:0] index;
            logic [7:0] value;
            unit = rises - data_start(command);
            width = data_width(command);
            per_byte = 8 / width;
            if (command == 8'h35) begin
                value = {6'b0, qe, 1'b0};
            end else begin
                index = INDEX_BITS'((32'(address) + unit / per_byte) % SIZE_BYTES);
                value = mem[index];
            end
            value = value << (width * (unit % per_byte));  // this unit in the top bits
            if (host_oe) refuse($sformatf(
                "the host drives the lines while the flash outputs data (command 0x%02h)",
                command));
            case (width)
                1: begin flash_o <= {2'b0, value[7], 1'b0}; flash_oe <= 4'b0010; end
                2: begin flash_o <= {2'b0, value[7:6]}; flash_oe <= 4'b0011; end
                default: begin flash_o <= value[7:4]; flash_oe <= 4'b1111; end
            endcase
        end
    end
endmodule

`default_nettype wire
