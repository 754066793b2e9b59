// Gathers NF consecutive words of PE lanes into one word of NF*PE lanes (lane order kept: word f
// fills lanes f*PE .. f*PE+PE-1). Used to assemble an output pixel from the MVTU's neuron folds.
// Output is a register; the last fold of a pixel waits only if that register is still occupied.
module bcnn_collect #(
    parameter PE = 2,
    parameter NF = 2,
    parameter DW = 1
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               in_valid,
    output wire               in_ready,
    input  wire [PE*DW-1:0]   in_data,
    output reg                out_valid,
    input  wire               out_ready,
    output reg  [NF*PE*DW-1:0] out_data
);
    localparam CW = $clog2(NF + 1);
    localparam [CW-1:0] ZERO = 0;
    localparam integer NF_LAST_I = NF - 1;
    localparam [CW-1:0] NF_LAST = NF_LAST_I[CW-1:0];

    reg [(NF-1)*PE*DW-1:0] folds;  // folds 0 .. NF-2 of the current word
    reg [CW-1:0]           f;
    wire last = (f == NF_LAST);
    assign in_ready = !last || !out_valid || out_ready;
    wire fire = in_valid && in_ready;

    always @(posedge clk) begin
        if (fire) begin
            if (last) out_data <= {in_data, folds};
            else folds[f*(PE*DW) +: PE*DW] <= in_data;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            f <= ZERO; out_valid <= 1'b0;
        end else begin
            if (fire) f <= last ? ZERO : f + 1'b1;
            if (fire && last) out_valid <= 1'b1;
            else if (out_ready) out_valid <= 1'b0;
        end
    end
endmodule
