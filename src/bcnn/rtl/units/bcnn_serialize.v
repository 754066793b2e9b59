// Output FIFO that takes words of PE lanes and emits one lane per beat, lane 0 first.
// DEPTH words; in_ready and out_valid/out_data depend on registers only, so the network's output
// never has a combinational path from its consumer back into the pipeline.
module bcnn_serialize #(
    parameter PE = 2,
    parameter DW = 8,
    parameter DEPTH = 4
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [PE*DW-1:0] in_data,
    output wire             out_valid,
    input  wire             out_ready,
    output wire [DW-1:0]    out_data
);
    localparam CW = $clog2(DEPTH + PE + 1);
    localparam DA = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam [CW-1:0] ZERO = 0;
    localparam integer LAST_I = DEPTH - 1;
    localparam [CW-1:0] LAST = LAST_I[CW-1:0];
    localparam integer FULL_I = DEPTH;
    localparam [CW-1:0] FULL = FULL_I[CW-1:0];
    localparam integer PE_LAST_I = PE - 1;
    localparam [CW-1:0] PE_LAST = PE_LAST_I[CW-1:0];

    reg [PE*DW-1:0] mem [0:DEPTH-1];
    reg [CW-1:0] wp, rp, count, lane;
    assign in_ready = (count != FULL);
    assign out_valid = (count != ZERO);
    wire [PE*DW-1:0] word = mem[rp[DA-1:0]];
    assign out_data = word[lane*DW +: DW];
    wire in_fire = in_valid && in_ready;
    wire out_fire = out_valid && out_ready;
    wire word_done = out_fire && (lane == PE_LAST);

    always @(posedge clk) begin
        if (in_fire) mem[wp[DA-1:0]] <= in_data;
    end

    always @(posedge clk) begin
        if (rst) begin
            wp <= ZERO; rp <= ZERO; count <= ZERO; lane <= ZERO;
        end else begin
            if (in_fire) wp <= (wp == LAST) ? ZERO : wp + 1'b1;
            if (out_fire) lane <= word_done ? ZERO : lane + 1'b1;
            if (word_done) rp <= (rp == LAST) ? ZERO : rp + 1'b1;
            if (in_fire && !word_done) count <= count + 1'b1;
            else if (word_done && !in_fire) count <= count - 1'b1;
        end
    end
endmodule
