// Population count: Y = number of ones in X, extended or truncated to W bits.
// X is cut into chunks of C bits, each counted with $countones, and the counts are summed by a balanced
// adder tree. Synthesis maps a chunk to about the LUTs of a bit-level adder tree (within 7% at N = 288
// and 1536), while the simulator counts a chunk with one word popcount instead of C one-bit additions.
// $countones is not used on all of X: Yosys expands it into a chain that overflows its stack at ~1k bits.
module bcnn_popcount #(
    parameter N = 4,
    parameter W = 8,
    parameter C = 32
) (
    input  wire [N-1:0] x,
    output wire [W-1:0] y
);
    localparam NC = (N + C - 1) / C;                // chunks
    localparam CW = $clog2(((N < C) ? N : C) + 1);  // bits of one chunk's count

    wire [NC*CW-1:0] counts;
    genvar i;
    generate
        for (i = 0; i < NC; i = i + 1) begin : chunk
            localparam integer LO = i * C;
            localparam integer NB = (N - LO < C) ? N - LO : C;  // bits in this chunk
            /* verilator lint_off UNUSEDSIGNAL */
            wire [31:0] c = $countones(x[LO +: NB]);
            /* verilator lint_on UNUSEDSIGNAL */
            assign counts[i*CW +: CW] = c[CW-1:0];
        end
    endgenerate
    bcnn_add_tree #(.N(NC), .LW(CW), .W(W), .SIGNED(0)) tree (.x(counts), .y(y));
endmodule
