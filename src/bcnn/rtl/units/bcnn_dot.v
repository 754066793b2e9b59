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
    wire [SIMD*AW-1:0] leaves;

    genvar j;
    generate
        for (j = 0; j < SIMD; j = j + 1) begin : lane
            if (EW == 1) begin : bin
                assign leaves[j*AW +: AW] = {{(AW-1){1'b0}}, ~(x[j] ^ w[j])};
            end else begin : int_in
                wire [AW-1:0] v = {{(AW-EW){x[j*EW+EW-1]}}, x[j*EW +: EW]};
                assign leaves[j*AW +: AW] = w[j] ? v : -v;
            end
        end
    endgenerate

    bcnn_add_tree #(.N(SIMD), .W(AW)) tree (.x(leaves), .y(y));
endmodule
