// First-layer input mapping: each raw 8-bit channel value goes through its channel's lookup table
// (the IR's input_lut) to become the signed IW-bit integer layer 0 multiplies with +-1 weights.
// ROM word v holds all channels' values for pixel value v (channel c at bits [c*IW +: IW]).
// One register stage; in_ready depends only on registers and out_ready.
module bcnn_input_map #(
    parameter C = 3,
    parameter IW = 8,
    parameter LUT_FILE = "input_lut.mem"
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          in_valid,
    output wire          in_ready,
    input  wire [8*C-1:0] in_data,
    output reg           out_valid,
    input  wire          out_ready,
    output wire [C*IW-1:0] out_data
);
    reg [C*IW-1:0] rom [0:255];
    initial $readmemh(LUT_FILE, rom);

    assign in_ready = !out_valid || out_ready;
    wire fire = in_valid && in_ready;

    always @(posedge clk) begin
        if (rst) out_valid <= 1'b0;
        else if (in_ready) out_valid <= in_valid;
    end

    genvar c;
    generate
        for (c = 0; c < C; c = c + 1) begin : ch
            reg [IW-1:0] q;
            always @(posedge clk) if (fire) q <= rom[in_data[8*c +: 8]][c*IW +: IW];
            assign out_data[c*IW +: IW] = q;
        end
    endgenerate
endmodule
