// Balanced adder tree: Y = sum of N two's-complement W-bit inputs (modulo 2^W).
// Every node is its own named wire (lvl[l].nd[j].s): simulators stay fast and synthesis sees a tree.
// Inputs are padded with zeros up to the next power of two.
module bcnn_add_tree #(
    parameter N = 4,
    parameter W = 8
) (
    input  wire [N*W-1:0] x,
    output wire [W-1:0]   y
);
    localparam L = $clog2(N);
    localparam N2 = 1 << L;

    genvar l, j;
    generate
        for (l = 0; l <= L; l = l + 1) begin : lvl
            for (j = 0; j < (N2 >> l); j = j + 1) begin : nd
                wire [W-1:0] s;
                if (l == 0) begin : leaf
                    if (j < N) begin : used
                        assign s = x[j*W +: W];
                    end else begin : zero
                        assign s = {W{1'b0}};
                    end
                end else begin : add
                    assign s = lvl[l-1].nd[2*j].s + lvl[l-1].nd[2*j+1].s;
                end
            end
        end
    endgenerate

    assign y = lvl[L].nd[0].s;
endmodule
