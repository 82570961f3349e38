// Test top of tests/sim/test_ecp5_models.py: the ECP5 models of sim/cells/ecp5_models.v in the
// modes the netlists use and the modes the models claim, on shared random stimulus (the bench
// tests/sim/ecp5_models_tb.py compares every output after every edge with a Python reference).
`default_nettype none
module ecp5_models_top #(
    parameter [319:0] INIT0 = 320'h0, parameter [319:0] INIT1 = 320'h0
) (
    input wire clk, ce0, ce1, rst0, rst1, sa, sb, input wire [17:0] a, b,
    output wire [35:0] p_comb, p_reg, output wire signedp_comb, signedp_reg,
    input wire a_ce, a_oce, a_we, a_rst, b_ce, b_oce, b_we, b_rst,
    input wire [13:0] a_ad, b_ad, input wire [17:0] a_di, b_di, input wire [2:0] b_cs,
    output wire [17:0] r18_a, r18_b, r36_a, r36_b, r9_a, r9_b, r2_a, r2_b, r1_a, r1_b
);
    mult_under_test comb (.clk(clk), .ce0(ce0), .ce1(ce1), .rst0(rst0), .rst1(rst1), .sa(sa), .sb(sb),
                          .a(a), .b(b), .p(p_comb), .signedp(signedp_comb));
    // Input registers on CE0, the pipeline register on CE1, the output register reset by RST1.
    mult_under_test #(.IA("CLK0"), .IB("CLK0"), .PL("CLK0"), .PL_CE("CE1"), .OUT("CLK0"), .OUT_RST("RST1"))
        registered (.clk(clk), .ce0(ce0), .ce1(ce1), .rst0(rst0), .rst1(rst1), .sa(sa), .sb(sb),
                    .a(a), .b(b), .p(p_reg), .signedp(signedp_reg));
`define BRAM_PORTS .clk(clk), .a_ce(a_ce), .a_oce(a_oce), .a_we(a_we), .a_rst(a_rst), .b_ce(b_ce), .b_oce(b_oce), \
    .b_we(b_we), .b_rst(b_rst), .a_ad(a_ad), .b_ad(b_ad), .a_di(a_di), .b_di(b_di), .b_cs(b_cs)
    // x18 true dual port, byte enables on AD[1:0], read-before-write on A, write-through on B.
    bram_under_test #(.DWA(18), .DWB(18), .WMA("READBEFOREWRITE"), .WMB("WRITETHROUGH"), .INIT0(INIT0), .INIT1(INIT1))
        r18 (`BRAM_PORTS, .a_do(r18_a), .b_do(r18_b));
    // x36 pseudo dual port (A writes, B reads), as Yosys's $__PDPW16KD_ maps it.
    bram_under_test #(.DWA(36), .DWB(36), .INIT0(INIT0), .INIT1(INIT1)) r36 (`BRAM_PORTS, .a_do(r36_a), .b_do(r36_b));
    // x9 on A, x18 on B (the feeder's mixed widths), NORMAL (output kept during a write).
    bram_under_test #(.DWA(9), .DWB(18), .INIT0(INIT0), .INIT1(INIT1)) r9 (`BRAM_PORTS, .a_do(r9_a), .b_do(r9_b));
    // x2 both ports, B with its output register and chip select 0b101, asynchronous reset.
    bram_under_test #(.DWA(2), .DWB(2), .WMA("READBEFOREWRITE"), .RMB("OUTREG"), .CSB("0b101"), .RESETMODE("ASYNC"),
                      .INIT0(INIT0), .INIT1(INIT1)) r2 (`BRAM_PORTS, .a_do(r2_a), .b_do(r2_b));
    // x1 on A, x4 on B.
    bram_under_test #(.DWA(1), .DWB(4), .WMB("WRITETHROUGH"), .INIT0(INIT0), .INIT1(INIT1))
        r1 (`BRAM_PORTS, .a_do(r1_a), .b_do(r1_b));
endmodule

// DP16KD with vector ports; the modes come in as parameters.
module bram_under_test #(
    parameter integer DWA = 18, parameter integer DWB = 18,
    parameter WMA = "NORMAL", parameter WMB = "NORMAL", parameter RMA = "NOREG", parameter RMB = "NOREG",
    parameter CSB = "0b000", parameter RESETMODE = "SYNC", parameter [319:0] INIT0 = 320'h0,
    parameter [319:0] INIT1 = 320'h0
) (
    input wire clk, a_ce, a_oce, a_we, a_rst, b_ce, b_oce, b_we, b_rst,
    input wire [13:0] a_ad, b_ad, input wire [17:0] a_di, b_di, input wire [2:0] b_cs,
    output wire [17:0] a_do, b_do
);
    DP16KD #(.DATA_WIDTH_A(DWA), .DATA_WIDTH_B(DWB), .WRITEMODE_A(WMA), .WRITEMODE_B(WMB),
             .REGMODE_A(RMA), .REGMODE_B(RMB), .CSDECODE_A("0b000"), .CSDECODE_B(CSB),
             .RESETMODE(RESETMODE), .INITVAL_00(INIT0), .INITVAL_01(INIT1)) ram (
        .CLKA(clk), .CEA(a_ce), .OCEA(a_oce), .WEA(a_we), .RSTA(a_rst), .CSA0(1'b0), .CSA1(1'b0), .CSA2(1'b0),
        .CLKB(clk), .CEB(b_ce), .OCEB(b_oce), .WEB(b_we), .RSTB(b_rst), .CSB0(b_cs[0]), .CSB1(b_cs[1]), .CSB2(b_cs[2]),
        .ADA0(a_ad[0]), .ADA1(a_ad[1]), .ADA2(a_ad[2]), .ADA3(a_ad[3]), .ADA4(a_ad[4]), .ADA5(a_ad[5]), .ADA6(a_ad[6]), .ADA7(a_ad[7]), .ADA8(a_ad[8]), .ADA9(a_ad[9]), .ADA10(a_ad[10]), .ADA11(a_ad[11]), .ADA12(a_ad[12]), .ADA13(a_ad[13]),
        .ADB0(b_ad[0]), .ADB1(b_ad[1]), .ADB2(b_ad[2]), .ADB3(b_ad[3]), .ADB4(b_ad[4]), .ADB5(b_ad[5]), .ADB6(b_ad[6]), .ADB7(b_ad[7]), .ADB8(b_ad[8]), .ADB9(b_ad[9]), .ADB10(b_ad[10]), .ADB11(b_ad[11]), .ADB12(b_ad[12]), .ADB13(b_ad[13]),
        .DIA0(a_di[0]), .DIA1(a_di[1]), .DIA2(a_di[2]), .DIA3(a_di[3]), .DIA4(a_di[4]), .DIA5(a_di[5]), .DIA6(a_di[6]), .DIA7(a_di[7]), .DIA8(a_di[8]), .DIA9(a_di[9]), .DIA10(a_di[10]), .DIA11(a_di[11]), .DIA12(a_di[12]), .DIA13(a_di[13]), .DIA14(a_di[14]), .DIA15(a_di[15]), .DIA16(a_di[16]), .DIA17(a_di[17]),
        .DIB0(b_di[0]), .DIB1(b_di[1]), .DIB2(b_di[2]), .DIB3(b_di[3]), .DIB4(b_di[4]), .DIB5(b_di[5]), .DIB6(b_di[6]), .DIB7(b_di[7]), .DIB8(b_di[8]), .DIB9(b_di[9]), .DIB10(b_di[10]), .DIB11(b_di[11]), .DIB12(b_di[12]), .DIB13(b_di[13]), .DIB14(b_di[14]), .DIB15(b_di[15]), .DIB16(b_di[16]), .DIB17(b_di[17]),
        .DOA0(a_do[0]), .DOA1(a_do[1]), .DOA2(a_do[2]), .DOA3(a_do[3]), .DOA4(a_do[4]), .DOA5(a_do[5]), .DOA6(a_do[6]), .DOA7(a_do[7]), .DOA8(a_do[8]), .DOA9(a_do[9]), .DOA10(a_do[10]), .DOA11(a_do[11]), .DOA12(a_do[12]), .DOA13(a_do[13]), .DOA14(a_do[14]), .DOA15(a_do[15]), .DOA16(a_do[16]), .DOA17(a_do[17]),
        .DOB0(b_do[0]), .DOB1(b_do[1]), .DOB2(b_do[2]), .DOB3(b_do[3]), .DOB4(b_do[4]), .DOB5(b_do[5]), .DOB6(b_do[6]), .DOB7(b_do[7]), .DOB8(b_do[8]), .DOB9(b_do[9]), .DOB10(b_do[10]), .DOB11(b_do[11]), .DOB12(b_do[12]), .DOB13(b_do[13]), .DOB14(b_do[14]), .DOB15(b_do[15]), .DOB16(b_do[16]), .DOB17(b_do[17]));
endmodule

// MULT18X18D with vector ports; registers as parameters.
module mult_under_test #(
    parameter IA = "NONE", parameter IB = "NONE", parameter PL = "NONE", parameter OUT = "NONE",
    parameter PL_CE = "CE0", parameter OUT_RST = "RST0", parameter RESETMODE = "SYNC"
) (
    input wire clk, ce0, ce1, rst0, rst1, sa, sb, input wire [17:0] a, b,
    output wire [35:0] p, output wire signedp
);
    wire [17:0] zero18 = 18'b0;
    MULT18X18D #(.REG_INPUTA_CLK(IA), .REG_INPUTB_CLK(IB), .REG_PIPELINE_CLK(PL), .REG_PIPELINE_CE(PL_CE),
                 .REG_OUTPUT_CLK(OUT), .REG_OUTPUT_RST(OUT_RST), .RESETMODE(RESETMODE)) mul (
        .CLK0(clk), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0), .CE0(ce0), .CE1(ce1), .CE2(1'b0), .CE3(1'b0),
        .RST0(rst0), .RST1(rst1), .RST2(1'b0), .RST3(1'b0), .SIGNEDA(sa), .SIGNEDB(sb), .SOURCEA(1'b0), .SOURCEB(1'b0),
        .A0(a[0]), .A1(a[1]), .A2(a[2]), .A3(a[3]), .A4(a[4]), .A5(a[5]), .A6(a[6]), .A7(a[7]), .A8(a[8]), .A9(a[9]), .A10(a[10]), .A11(a[11]), .A12(a[12]), .A13(a[13]), .A14(a[14]), .A15(a[15]), .A16(a[16]), .A17(a[17]),
        .B0(b[0]), .B1(b[1]), .B2(b[2]), .B3(b[3]), .B4(b[4]), .B5(b[5]), .B6(b[6]), .B7(b[7]), .B8(b[8]), .B9(b[9]), .B10(b[10]), .B11(b[11]), .B12(b[12]), .B13(b[13]), .B14(b[14]), .B15(b[15]), .B16(b[16]), .B17(b[17]),
        .C0(zero18[0]), .C1(zero18[1]), .C2(zero18[2]), .C3(zero18[3]), .C4(zero18[4]), .C5(zero18[5]), .C6(zero18[6]), .C7(zero18[7]), .C8(zero18[8]), .C9(zero18[9]), .C10(zero18[10]), .C11(zero18[11]), .C12(zero18[12]), .C13(zero18[13]), .C14(zero18[14]), .C15(zero18[15]), .C16(zero18[16]), .C17(zero18[17]),
        .P0(p[0]), .P1(p[1]), .P2(p[2]), .P3(p[3]), .P4(p[4]), .P5(p[5]), .P6(p[6]), .P7(p[7]), .P8(p[8]), .P9(p[9]), .P10(p[10]), .P11(p[11]), .P12(p[12]), .P13(p[13]), .P14(p[14]), .P15(p[15]), .P16(p[16]), .P17(p[17]), .P18(p[18]), .P19(p[19]), .P20(p[20]), .P21(p[21]), .P22(p[22]), .P23(p[23]), .P24(p[24]), .P25(p[25]), .P26(p[26]), .P27(p[27]), .P28(p[28]), .P29(p[29]), .P30(p[30]), .P31(p[31]), .P32(p[32]), .P33(p[33]), .P34(p[34]), .P35(p[35]), .SIGNEDP(signedp));
endmodule
`default_nettype wire
