// Balanced adder tree: Y = sum of N LW-bit inputs (two's complement if SIGNED, else unsigned),
// extended or truncated to W bits (so Y is the sum modulo 2^W).
// Every node is its own named wire (lvl[l].nd[j].s): simulators stay fast and synthesis sees a tree.
// Node widths grow by one bit per level (level l holds exact sums of 2^l leaves in LW + l bits), so a
// popcount's first levels are 1- and 2-bit adders, not W-bit ones. Inputs are padded with zeros up to
// the next power of two.
module bcnn_add_tree #(
    parameter N = 4,
    parameter LW = 1,
    parameter W = 8,
    parameter SIGNED = 0
) (
    input  wire [N*LW-1:0] x,
    output wire [W-1:0]    y
);
    localparam L = $clog2(N);
    localparam N2 = 1 << L;
    localparam TW = LW + L;  // width of the root

    genvar l, j;
    generate
        for (l = 0; l <= L; l = l + 1) begin : lvl
            for (j = 0; j < (N2 >> l); j = j + 1) begin : nd
                wire [LW+l-1:0] s;
                if (l == 0) begin : leaf
                    if (j < N) begin : used
                        assign s = x[j*LW +: LW];
                    end else begin : zero
                        assign s = {LW{1'b0}};
                    end
                end else begin : add
                    wire [LW+l-2:0] a = lvl[l-1].nd[2*j].s;
                    wire [LW+l-2:0] b = lvl[l-1].nd[2*j+1].s;
                    wire ea = SIGNED ? a[LW+l-2] : 1'b0;
                    wire eb = SIGNED ? b[LW+l-2] : 1'b0;
                    assign s = {ea, a} + {eb, b};
                end
            end
        end
    endgenerate

    wire [TW-1:0] root = lvl[L].nd[0].s;
    generate
        if (W > TW) begin : ext
            wire e = SIGNED ? root[TW-1] : 1'b0;
            assign y = {{(W-TW){e}}, root};
        end else begin : trunc
            /* verilator lint_off UNUSEDSIGNAL */
            wire [TW-1:0] r = root;
            /* verilator lint_on UNUSEDSIGNAL */
            assign y = r[W-1:0];
        end
    endgenerate
endmodule
