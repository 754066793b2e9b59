// One neuron's partial dot product over SIMD inputs with +-1 weights (w = 1 means +1).
//   EW == 1 (binary inputs): Y = popcount(XNOR(x, w)), the count of agreeing bits.
//   EW  > 1 (integer inputs, first layer): Y = sum of (w ? x : -x), x signed EW-bit.
// Y is AW bits wide (AW > EW); the caller's accumulator is AW bits, so no node overflows.
module bcnn_dot #(
    parameter SIMD = 4,
    parameter EW = 1,
    parameter AW = 8
) (
    input  wire [SIMD*EW-1:0] x,
    input  wire [SIMD-1:0]    w,
    output wire [AW-1:0]      y
);
    genvar j;
    generate
        if (EW == 1) begin : bin
            bcnn_popcount #(.N(SIMD), .W(AW)) count (.x(~(x ^ w)), .y(y));
        end else begin : int_in
            wire [SIMD*(EW+1)-1:0] leaves;  // -x needs one more bit (x = -2^(EW-1))
            for (j = 0; j < SIMD; j = j + 1) begin : lane
                wire [EW:0] v = {x[j*EW+EW-1], x[j*EW +: EW]};
                assign leaves[j*(EW+1) +: EW+1] = w[j] ? v : -v;
            end
            bcnn_add_tree #(.N(SIMD), .LW(EW+1), .W(AW), .SIGNED(1)) tree (.x(leaves), .y(y));
        end
    endgenerate
endmodule
