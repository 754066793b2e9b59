// Max-pooling on bits, window and stride P, over a map of OW columns of C-bit pixels in raster order:
// channel c combines its window with AND where AND_MASK[c] = 1 (channels thresholded with <=) and
// with OR elsewhere. One row of partial results (OW/P words); a pooled pixel leaves when the last
// input pixel of its window arrives. P = 1 passes the stream through unchanged.
module bcnn_pool #(
    parameter OW = 8,
    parameter C = 4,
    parameter P = 2,
    parameter AND_MASK = 0
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [C-1:0] in_data,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [C-1:0] out_data
);
    generate
        if (P == 1) begin : pass
            assign out_valid = in_valid;
            assign in_ready = out_ready;
            assign out_data = in_data;
            // clk, rst and OW are not needed without pooling
            wire unused = &{1'b0, clk, rst};
        end else begin : pool
            localparam PW = OW / P;
            localparam CW = $clog2(PW + P + 1);
            localparam PA = (PW > 1) ? $clog2(PW) : 1;
            localparam [CW-1:0] ZERO = 0;
            localparam integer PL = P - 1;
            localparam integer PWL = PW - 1;
            localparam [CW-1:0] P_LAST = PL[CW-1:0];
            localparam [CW-1:0] PW_LAST = PWL[CW-1:0];
            localparam [C-1:0] MASK = AND_MASK;

            reg [C-1:0] row [0:PW-1];
            reg [CW-1:0] xi, yi, px;  // position inside the window, pooled column
            reg          ov;
            reg [C-1:0]  od;
            wire first = (xi == ZERO) && (yi == ZERO);
            wire done = (xi == P_LAST) && (yi == P_LAST);
            wire [C-1:0] prev = row[px[PA-1:0]];
            wire [C-1:0] comb = first ? in_data
                              : (((prev | in_data) & ~MASK) | ((prev & in_data) & MASK));
            assign in_ready = !done || !ov || out_ready;
            wire fire = in_valid && in_ready;

            always @(posedge clk) begin
                if (fire) row[px[PA-1:0]] <= comb;
                if (fire && done) od <= comb;
            end

            always @(posedge clk) begin
                if (rst) begin
                    xi <= ZERO; yi <= ZERO; px <= ZERO; ov <= 1'b0;
                end else begin
                    if (fire) begin
                        if (xi != P_LAST) begin
                            xi <= xi + 1'b1;
                        end else begin
                            xi <= ZERO;
                            if (px != PW_LAST) px <= px + 1'b1;
                            else begin
                                px <= ZERO;
                                yi <= (yi == P_LAST) ? ZERO : yi + 1'b1;
                            end
                        end
                    end
                    if (fire && done) ov <= 1'b1;
                    else if (out_ready) ov <= 1'b0;
                end
            end
            assign out_valid = ov;
            assign out_data = od;
        end
    endgenerate
endmodule
