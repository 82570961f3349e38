// Behavioural simulation models of the two ECP5 primitives Yosys ships only as blackboxes
// (share/lattice/cells_bb_ecp5.v): the 18x18 multiplier MULT18X18D and the 18 kbit block RAM
// DP16KD. Written for sigprop-fpga's netlist rung (`sigprop-fpga sim --netlist ecp5`) from the
// Lattice technical notes (FPGA-TN-02205 / TN1267 "ECP5 and ECP5-5G sysDSP Usage Guide",
// FPGA-TN-02204 / TN1264 "ECP5 and ECP5-5G Memory Usage Guide") and from the parameters Yosys
// sets (techlibs/lattice dsp_map_18x18.v, brams_16kd.txt, brams_map_16kd.v). Every mode the
// models do not implement stops the simulation at time 0 with $fatal, naming the parameter, so
// a netlist never runs on a silently wrong model. Each model is tested on its own against a
// reference in tests/sim/test_ecp5_models.py.
//
// Cycle semantics are those of a clocked simulation without delays: registers update on the
// active clock edge, combinational paths settle at once. GSR (the global set/reset at
// configuration) is not modelled: every register and the memory start from their configured
// values (zero, INITVAL_xx).

`default_nettype none

// One register of the sysDSP block with its clock, clock enable and reset chosen, like the
// primitive, by name from the four CLKn/CEn/RSTn inputs ("NONE" clock: a wire, no register).
module SIGPROP_ECP5_DSPREG #(
    parameter WIDTH = 18,
    parameter CLK = "NONE",
    parameter CE = "CE0",
    parameter RST = "RST0",
    parameter RESETMODE = "SYNC"
) (
    input wire [3:0] clks, ces, rsts,
    input wire [WIDTH-1:0] d,
    output wire [WIDTH-1:0] q
);
    function integer pick(input [8*8-1:0] name, input [8*4-1:0] prefix);
        pick = (name == {prefix, "0"}) ? 0 : (name == {prefix, "1"}) ? 1 :
               (name == {prefix, "2"}) ? 2 : (name == {prefix, "3"}) ? 3 : -1;
    endfunction
    localparam integer KCLK = pick(CLK, "CLK");
    localparam integer KCE = pick(CE, "CE");
    localparam integer KRST = pick(RST, "RST");
    generate
        if (CLK == "NONE") begin : wire_through
            assign q = d;
        end else begin : registered
            initial begin
                if (KCLK < 0) $fatal(1, "MULT18X18D: clock select %0s is not NONE or CLK0..CLK3", CLK);
                if (KCE < 0) $fatal(1, "MULT18X18D: clock enable select %0s is not CE0..CE3", CE);
                if (KRST < 0) $fatal(1, "MULT18X18D: reset select %0s is not RST0..RST3", RST);
                if (RESETMODE != "SYNC" && RESETMODE != "ASYNC")
                    $fatal(1, "MULT18X18D: RESETMODE %0s is not SYNC or ASYNC", RESETMODE);
            end
            wire c = clks[KCLK < 0 ? 0 : KCLK];
            wire e = ces[KCE < 0 ? 0 : KCE];
            wire r = rsts[KRST < 0 ? 0 : KRST];
            reg [WIDTH-1:0] state = {WIDTH{1'b0}};
            assign q = state;
            if (RESETMODE == "ASYNC") begin : async_reset
                always @(posedge c or posedge r)
                    if (r) state <= {WIDTH{1'b0}};
                    else if (e) state <= d;
            end else begin : sync_reset
                always @(posedge c)
                    if (r) state <= {WIDTH{1'b0}};
                    else if (e) state <= d;
            end
        end
    endgenerate
endmodule


// MULT18X18D: an 18x18 multiplier with optional input (A with SIGNEDA and SOURCEA, B with
// SIGNEDB and SOURCEB, C), pipeline and output registers (TN1267, "MULT18X18D").
//
// P = A x B as 36-bit two's complement, each operand signed when its SIGNEDx is 1 and unsigned
// otherwise; SIGNEDP = SIGNEDA | SIGNEDB, delayed with the product. SOURCEA/SOURCEB select the
// shift-in operands SRIA/SRIB instead of A/B; ROA/ROB/ROC and SROA/SROB give the (registered
// when the input register is on) operands. Each register takes its clock, clock enable and
// reset from REG_<name>_CLK/_CE/_RST ("NONE", "CLK0".."CLK3" / "CE0".."CE3" / "RST0"..
// "RST3"), resets to zero (RESETMODE "SYNC" or "ASYNC") and the sign controls travel with
// their operand's input register. Not modelled (stops at time 0): MULT_BYPASS "ENABLED",
// SOURCEB_MODE other than "B_SHIFT" when SOURCEB is used, HIGHSPEED_CLK, CAS_MATCH_REG "TRUE"
// and the CLKn_DIV dividers set to anything but "ENABLED" (the default, which divides nothing
// in a single-rate design).
module MULT18X18D (
    input wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input wire B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input wire C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input wire SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9,
    input wire SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input wire SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9,
    input wire SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output wire SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9,
    output wire SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output wire SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9,
    output wire SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output wire ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9,
    output wire ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
    output wire ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9,
    output wire ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0,
    output wire ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9,
    output wire ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
    output wire P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
    output wire P2, P1, P0, SIGNEDP
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

    initial begin
        if (MULT_BYPASS != "DISABLED") $fatal(1, "MULT18X18D model: MULT_BYPASS %0s not modelled", MULT_BYPASS);
        if (HIGHSPEED_CLK != "NONE") $fatal(1, "MULT18X18D model: HIGHSPEED_CLK %0s not modelled", HIGHSPEED_CLK);
        if (CAS_MATCH_REG != "FALSE") $fatal(1, "MULT18X18D model: CAS_MATCH_REG %0s not modelled", CAS_MATCH_REG);
        if (CLK0_DIV != "ENABLED" || CLK1_DIV != "ENABLED" || CLK2_DIV != "ENABLED" || CLK3_DIV != "ENABLED")
            $fatal(1, "MULT18X18D model: CLKn_DIV other than ENABLED not modelled");
    end

    wire [3:0] clks = {CLK3, CLK2, CLK1, CLK0};
    wire [3:0] ces = {CE3, CE2, CE1, CE0};
    wire [3:0] rsts = {RST3, RST2, RST1, RST0};
    wire [17:0] a_pin = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_pin = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [17:0] c_pin = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};
    wire [17:0] sria = {SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9,
                        SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0};
    wire [17:0] srib = {SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9,
                        SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0};
    always @* if (SOURCEB && SOURCEB_MODE != "B_SHIFT")
        $fatal(1, "MULT18X18D model: SOURCEB_MODE %0s not modelled", SOURCEB_MODE);

    wire [18:0] a_in = {SIGNEDA, SOURCEA ? sria : a_pin};
    wire [18:0] b_in = {SIGNEDB, SOURCEB ? srib : b_pin};
    wire [18:0] a_q, b_q;
    wire [17:0] c_q;
    SIGPROP_ECP5_DSPREG #(.WIDTH(19), .CLK(REG_INPUTA_CLK), .CE(REG_INPUTA_CE), .RST(REG_INPUTA_RST),
                          .RESETMODE(RESETMODE)) reg_a (.clks(clks), .ces(ces), .rsts(rsts), .d(a_in), .q(a_q));
    SIGPROP_ECP5_DSPREG #(.WIDTH(19), .CLK(REG_INPUTB_CLK), .CE(REG_INPUTB_CE), .RST(REG_INPUTB_RST),
                          .RESETMODE(RESETMODE)) reg_b (.clks(clks), .ces(ces), .rsts(rsts), .d(b_in), .q(b_q));
    SIGPROP_ECP5_DSPREG #(.WIDTH(18), .CLK(REG_INPUTC_CLK), .CE(REG_INPUTC_CE), .RST(REG_INPUTC_RST),
                          .RESETMODE(RESETMODE)) reg_c (.clks(clks), .ces(ces), .rsts(rsts), .d(c_pin), .q(c_q));

    // Operands extended by one bit: the sign bit when signed, zero when not.
    wire signed [18:0] a_ext = {a_q[18] & a_q[17], a_q[17:0]};
    wire signed [18:0] b_ext = {b_q[18] & b_q[17], b_q[17:0]};
    wire signed [37:0] product = a_ext * b_ext;
    wire [36:0] mult = {a_q[18] | b_q[18], product[35:0]};
    wire [36:0] pipe_q, out_q;
    SIGPROP_ECP5_DSPREG #(.WIDTH(37), .CLK(REG_PIPELINE_CLK), .CE(REG_PIPELINE_CE), .RST(REG_PIPELINE_RST),
                          .RESETMODE(RESETMODE)) reg_pipe (.clks(clks), .ces(ces), .rsts(rsts), .d(mult), .q(pipe_q));
    SIGPROP_ECP5_DSPREG #(.WIDTH(37), .CLK(REG_OUTPUT_CLK), .CE(REG_OUTPUT_CE), .RST(REG_OUTPUT_RST),
                          .RESETMODE(RESETMODE)) reg_out (.clks(clks), .ces(ces), .rsts(rsts), .d(pipe_q), .q(out_q));

    assign {SIGNEDP, P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = out_q;
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9,
            ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a_q[17:0];
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9,
            ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b_q[17:0];
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9,
            ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = c_q;
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9,
            SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_q[17:0];
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9,
            SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_q[17:0];
endmodule


// One port of DP16KD: address decoding for its data width, the write into the shared array
// (done by the parent), the read latch and the optional output register.
//
// The array is 1024 words of 18 bits (INITVAL_xx holds words 16*xx .. 16*xx+15, each in a
// 20-bit field). As Yosys's memory library (memlib "widths 1 2 4 9 18") and TN1264 lay it
// out: an 18-bit word is two 9-bit halves (bits 8:0 and 17:9, chosen by AD[3]); a 9-bit half
// is two 4-bit nibbles (AD[2]) and a ninth bit used only by x9; a nibble is two 2-bit
// (AD[1]) and those two 1-bit (AD[0]) cells. In x18 AD[1:0] are the byte (9-bit) write
// enables; in x36 (pseudo dual port, port A writes, port B reads) AD[4] is unused, AD[3:0]
// are the four byte write enables of port A, and the 36 bits are the words 2k (DIA/DOA) and
// 2k+1 (DIB/DOB).
module SIGPROP_ECP5_BRAM_PORT #(
    parameter integer WIDTH = 18,
    parameter REGMODE = "NOREG",
    parameter WRITEMODE = "NORMAL",
    parameter RESETMODE = "SYNC",
    parameter CSDECODE = "0b000",
    parameter CLKMUX = "CLK"
) (
    input wire clk_pin, ce, oce, we, rst,
    input wire [2:0] cs,
    input wire [13:0] ad,
    input wire [35:0] di,
    // the two words the access touches (x36: both; otherwise word_lo only)
    output wire [9:0] word_lo_index,
    input wire [17:0] word_lo,
    input wire [17:0] word_hi,
    // per-bit write masks and data for those two words
    output reg [17:0] wmask_lo, wmask_hi,
    output reg [17:0] wdata_lo, wdata_hi,
    output wire write,
    output wire [35:0] dout
);
    localparam [2:0] CS_MATCH = {CSDECODE[23:16] == "1", CSDECODE[15:8] == "1", CSDECODE[7:0] == "1"};
    initial begin
        if (WIDTH != 1 && WIDTH != 2 && WIDTH != 4 && WIDTH != 9 && WIDTH != 18 && WIDTH != 36)
            $fatal(1, "DP16KD model: DATA_WIDTH %0d is not 1, 2, 4, 9, 18 or 36", WIDTH);
        if (REGMODE != "NOREG" && REGMODE != "OUTREG")
            $fatal(1, "DP16KD model: REGMODE %0s is not NOREG or OUTREG", REGMODE);
        if (WRITEMODE != "NORMAL" && WRITEMODE != "WRITETHROUGH" && WRITEMODE != "READBEFOREWRITE")
            $fatal(1, "DP16KD model: WRITEMODE %0s is not NORMAL, WRITETHROUGH or READBEFOREWRITE", WRITEMODE);
        if (RESETMODE != "SYNC" && RESETMODE != "ASYNC")
            $fatal(1, "DP16KD model: RESETMODE %0s is not SYNC or ASYNC", RESETMODE);
        if (CLKMUX != "CLKA" && CLKMUX != "CLKB" && CLKMUX != "INV")
            $fatal(1, "DP16KD model: CLKxMUX %0s is not CLKA/CLKB or INV", CLKMUX);
    end
    wire clk = (CLKMUX == "INV") ? ~clk_pin : clk_pin;
    wire selected = ce && (cs == CS_MATCH);
    assign write = selected && we;

    // Position of the access inside the 18-bit word.
    localparam integer BITS = (WIDTH >= 18) ? 18 : WIDTH;
    wire [4:0] offset = (WIDTH == 9) ? (ad[3] ? 5'd9 : 5'd0)
                      : (WIDTH == 4) ? (ad[3] ? 5'd9 : 5'd0) + (ad[2] ? 5'd4 : 5'd0)
                      : (WIDTH == 2) ? (ad[3] ? 5'd9 : 5'd0) + {2'b0, ad[2:1], 1'b0}
                      : (WIDTH == 1) ? (ad[3] ? 5'd9 : 5'd0) + {2'b0, ad[2:0]}
                      : 5'd0;
    assign word_lo_index = (WIDTH == 36) ? {ad[13:5], 1'b0} : ad[13:4];
    wire [17:0] field = (BITS == 18) ? 18'h3ffff : ((18'd1 << BITS) - 18'd1) << offset;

    always @* begin
        wdata_lo = 18'b0;
        wdata_hi = 18'b0;
        wmask_lo = 18'b0;
        wmask_hi = 18'b0;
        if (WIDTH == 36) begin
            wdata_lo = di[17:0];
            wdata_hi = di[35:18];
            wmask_lo = {{9{ad[1]}}, {9{ad[0]}}};
            wmask_hi = {{9{ad[3]}}, {9{ad[2]}}};
        end else if (WIDTH == 18) begin
            wdata_lo = di[17:0];
            wmask_lo = {{9{ad[1]}}, {9{ad[0]}}};
        end else begin
            wdata_lo = {18'b0, di[BITS-1:0]} << offset;
            wmask_lo = field;
        end
    end

    // What a read returns now (before this edge's write) and what it returns after the write.
    wire [17:0] merged_lo = (word_lo & ~wmask_lo) | (wdata_lo & wmask_lo);
    wire [17:0] merged_hi = (word_hi & ~wmask_hi) | (wdata_hi & wmask_hi);
    function [35:0] extract(input [17:0] lo, input [17:0] hi);
        if (WIDTH == 36) extract = {hi, lo};
        else if (WIDTH == 18) extract = {18'b0, lo};
        else extract = {18'b0, (lo >> offset) & ((18'd1 << BITS) - 18'd1)};
    endfunction

    reg [35:0] latch = 36'b0;
    reg [35:0] outreg = 36'b0;
    assign dout = (REGMODE == "OUTREG") ? outreg : latch;
    wire [35:0] read_now = (write && WRITEMODE == "WRITETHROUGH") ? extract(merged_lo, merged_hi)
                                                                  : extract(word_lo, word_hi);
    wire keep = write && WRITEMODE == "NORMAL";
    generate
        if (RESETMODE == "ASYNC") begin : async_reset
            always @(posedge clk or posedge rst)
                if (rst) begin
                    latch <= 36'b0;
                    outreg <= 36'b0;
                end else begin
                    if (selected && !keep) latch <= read_now;
                    if (oce) outreg <= latch;
                end
        end else begin : sync_reset
            always @(posedge clk)
                if (rst) begin
                    latch <= 36'b0;
                    outreg <= 36'b0;
                end else begin
                    if (selected && !keep) latch <= read_now;
                    if (oce) outreg <= latch;
                end
        end
    endgenerate
endmodule


// DP16KD: 18 kbit true dual port block RAM (TN1264, "DP16KD"), widths 1, 2, 4, 9 and 18 per
// port, and the x36 pseudo dual port mode (DATA_WIDTH_A = 36 writes through port A with DIA
// low and DIB high, DATA_WIDTH_B = 36 reads through port B onto DOA low and DOB high). Writes
// are masked by the byte enables (x18: ADx[1:0], x36: ADA[3:0]); WRITEMODE per port (NORMAL
// keeps the output during a write, WRITETHROUGH shows the new data, READBEFOREWRITE the old);
// REGMODE NOREG or OUTREG (one more register, clock enabled by OCEx); RST clears the output
// (RESETMODE SYNC or ASYNC); the port is selected when CEx is 1 and CSx[2:0] equals
// CSDECODE_x. A read on one port of bits the other port writes in the same cycle returns them
// inverted: the silicon leaves it undefined (TN1264), sigprop-fpga's synthesis tells Yosys the
// datapath never relies on it (hdl.relax_read_collisions), and the netlist rung checks that.
module DP16KD (
    input wire DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6,
    input wire DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input wire ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input wire CEA, OCEA, CLKA, WEA, RSTA,
    input wire CSA2, CSA1, CSA0,
    output wire DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
    output wire DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input wire DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6,
    input wire DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input wire ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input wire CEB, OCEB, CLKB, WEB, RSTB,
    input wire CSB2, CSB1, CSB0,
    output wire DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
    output wire DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter integer DATA_WIDTH_A = 18;
    parameter integer DATA_WIDTH_B = 18;
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
    parameter WID = 0;
    parameter INIT_DATA = "STATIC";
    parameter [319:0] INITVAL_00 = 320'h0, INITVAL_01 = 320'h0, INITVAL_02 = 320'h0, INITVAL_03 = 320'h0;
    parameter [319:0] INITVAL_04 = 320'h0, INITVAL_05 = 320'h0, INITVAL_06 = 320'h0, INITVAL_07 = 320'h0;
    parameter [319:0] INITVAL_08 = 320'h0, INITVAL_09 = 320'h0, INITVAL_0A = 320'h0, INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0, INITVAL_0D = 320'h0, INITVAL_0E = 320'h0, INITVAL_0F = 320'h0;
    parameter [319:0] INITVAL_10 = 320'h0, INITVAL_11 = 320'h0, INITVAL_12 = 320'h0, INITVAL_13 = 320'h0;
    parameter [319:0] INITVAL_14 = 320'h0, INITVAL_15 = 320'h0, INITVAL_16 = 320'h0, INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0, INITVAL_19 = 320'h0, INITVAL_1A = 320'h0, INITVAL_1B = 320'h0;
    parameter [319:0] INITVAL_1C = 320'h0, INITVAL_1D = 320'h0, INITVAL_1E = 320'h0, INITVAL_1F = 320'h0;
    parameter [319:0] INITVAL_20 = 320'h0, INITVAL_21 = 320'h0, INITVAL_22 = 320'h0, INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0, INITVAL_25 = 320'h0, INITVAL_26 = 320'h0, INITVAL_27 = 320'h0;
    parameter [319:0] INITVAL_28 = 320'h0, INITVAL_29 = 320'h0, INITVAL_2A = 320'h0, INITVAL_2B = 320'h0;
    parameter [319:0] INITVAL_2C = 320'h0, INITVAL_2D = 320'h0, INITVAL_2E = 320'h0, INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0, INITVAL_31 = 320'h0, INITVAL_32 = 320'h0, INITVAL_33 = 320'h0;
    parameter [319:0] INITVAL_34 = 320'h0, INITVAL_35 = 320'h0, INITVAL_36 = 320'h0, INITVAL_37 = 320'h0;
    parameter [319:0] INITVAL_38 = 320'h0, INITVAL_39 = 320'h0, INITVAL_3A = 320'h0, INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0, INITVAL_3D = 320'h0, INITVAL_3E = 320'h0, INITVAL_3F = 320'h0;

    localparam [20479:0] INITVALS = {
        INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38,
        INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30,
        INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28,
        INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20,
        INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18,
        INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10,
        INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08,
        INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};

    initial begin
        if (DATA_WIDTH_B == 36 && DATA_WIDTH_A != 36)
            $fatal(1, "DP16KD model: x36 reads need the x36 write port (DATA_WIDTH_A = 36)");
    end

    reg [17:0] mem [0:1023];
    integer i;
    initial for (i = 0; i < 1024; i = i + 1) mem[i] = INITVALS[i * 20 +: 18];

    wire [35:0] dia = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6,
                       DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
                       DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6,
                       DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [35:0] dib = {18'b0, DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7,
                       DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};

    wire [9:0] ia, ib;
    wire [17:0] wma_lo, wma_hi, wda_lo, wda_hi, wmb_lo, wmb_hi, wdb_lo, wdb_hi;
    wire wra, wrb;
    wire [35:0] doa, dob;
    // A port reading bits the other port writes at the same edge gets them inverted: TN1264
    // leaves such a read undefined, so a design that used it would fail here (sigprop-fpga tells
    // Yosys the datapath never does: hdl.relax_read_collisions). In x36 port B reads the word
    // pair ib, ib + 1 and port A writes the pair ia, ia + 1.
    wire a36 = DATA_WIDTH_A == 36;
    wire [17:0] clash_a_lo = (wrb && ib == ia) ? wmb_lo : 18'b0;
    wire [17:0] clash_a_hi = (wrb && ib == (ia | 10'd1)) ? wmb_lo : 18'b0;
    wire [17:0] clash_b_lo = ((wra && ia == ib) ? wma_lo : 18'b0) | ((wra && a36 && (ia | 10'd1) == ib) ? wma_hi : 18'b0);
    wire [17:0] clash_b_hi = ((wra && ia == (ib | 10'd1)) ? wma_lo : 18'b0)
                           | ((wra && a36 && (ia | 10'd1) == (ib | 10'd1)) ? wma_hi : 18'b0);
    SIGPROP_ECP5_BRAM_PORT #(.WIDTH(DATA_WIDTH_A), .REGMODE(REGMODE_A), .WRITEMODE(WRITEMODE_A),
                             .RESETMODE(RESETMODE), .CSDECODE(CSDECODE_A), .CLKMUX(CLKAMUX)) port_a (
        .clk_pin(CLKA), .ce(CEA), .oce(OCEA), .we(WEA), .rst(RSTA), .cs({CSA2, CSA1, CSA0}), .ad(ada),
        .di(dia), .word_lo_index(ia), .word_lo(mem[ia] ^ clash_a_lo), .word_hi(mem[ia | 10'd1] ^ clash_a_hi),
        .wmask_lo(wma_lo), .wmask_hi(wma_hi), .wdata_lo(wda_lo), .wdata_hi(wda_hi), .write(wra), .dout(doa));
    SIGPROP_ECP5_BRAM_PORT #(.WIDTH(DATA_WIDTH_B), .REGMODE(REGMODE_B), .WRITEMODE(WRITEMODE_B),
                             .RESETMODE(RESETMODE), .CSDECODE(CSDECODE_B), .CLKMUX(CLKBMUX)) port_b (
        .clk_pin(CLKB), .ce(CEB), .oce(OCEB), .we(WEB && DATA_WIDTH_A != 36), .rst(RSTB),
        .cs({CSB2, CSB1, CSB0}), .ad(adb), .di(dib), .word_lo_index(ib), .word_lo(mem[ib] ^ clash_b_lo),
        .word_hi(mem[ib | 10'd1] ^ clash_b_hi), .wmask_lo(wmb_lo), .wmask_hi(wmb_hi), .wdata_lo(wdb_lo),
        .wdata_hi(wdb_hi), .write(wrb), .dout(dob));

    wire clka = (CLKAMUX == "INV") ? ~CLKA : CLKA;
    wire clkb = (CLKBMUX == "INV") ? ~CLKB : CLKB;
    // Non-blocking writes of the enabled bits only: a read of either port at the same edge sees
    // the old word, and the two ports may write different bits of one word in the same cycle.
    integer ka, kb;
    always @(posedge clka)
        if (wra)
            for (ka = 0; ka < 18; ka = ka + 1) begin
                if (wma_lo[ka]) mem[ia][ka] <= wda_lo[ka];
                if (DATA_WIDTH_A == 36 && wma_hi[ka]) mem[ia | 10'd1][ka] <= wda_hi[ka];
            end
    always @(posedge clkb)
        if (wrb)
            for (kb = 0; kb < 18; kb = kb + 1)
                if (wmb_lo[kb]) mem[ib][kb] <= wdb_lo[kb];

    // x36 reads put the high word on DOB; otherwise each port drives its own outputs.
    wire [17:0] out_a = (DATA_WIDTH_B == 36) ? dob[17:0] : doa[17:0];
    wire [17:0] out_b = (DATA_WIDTH_B == 36) ? dob[35:18] : dob[17:0];
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
            DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = out_a;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
            DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = out_b;
endmodule

`default_nettype wire
