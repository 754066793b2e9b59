// Matrix-vector-threshold unit: PE neurons x SIMD inputs per cycle.
//
// Input: a stream of SIMD-element chunks; per output pixel NF neuron folds x SF synapse folds, in
// that order (the sliding-window unit repeats the window once per neuron fold). Chunk (nf, sf) meets
// weight word nf*SF + sf, whose lane p (neuron nf*PE + p) holds bits [p*SIMD +: SIMD].
// Per fold the PE accumulators sum SF partial dot products; after the last one each lane emits
//   OUT_ACC == 0: one bit, acc >= thr (ge = 1) or acc <= thr (ge = 0); threshold word nf, lane p is
//                 {ge, thr[AW-1:0]} (binary layers compare the popcount: bcnn.rtl.generate converts);
//   OUT_ACC == 1: the accumulator, as 2*popcount - FANIN for binary inputs (EW == 1).
// Two register stages (operands + ROM reads, then accumulate); no bubbles: one chunk per cycle
// unless the output register is full at the end of a fold.
// W_STYLE says where the weights live: 0 = the synthesizer decides, 1 = block RAM, 2 = LUT RAM
// (distributed), 3 = logic (a ROM of constants folded into the XNOR LUTs; with one weight word the
// weights are plain constants).
module bcnn_mvtu #(
    parameter SIMD = 4,
    parameter EW = 1,
    parameter PE = 2,
    parameter NF = 1,
    parameter SF = 1,
    parameter AW = 8,
    parameter FANIN = 4,
    parameter OUT_ACC = 0,
    parameter W_FILE = "weights.mem",
    parameter T_FILE = "thresholds.mem",
    parameter W_STYLE = 0,
    parameter DW = OUT_ACC ? AW : 1         // output bits per lane (derived; do not override)
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              in_valid,
    output wire              in_ready,
    input  wire [SIMD*EW-1:0] in_data,
    output reg               out_valid,
    input  wire              out_ready,
    output reg  [PE*DW-1:0]  out_data
);
    localparam NW = NF * SF;                  // weight words
    localparam WA = (NW > 1) ? $clog2(NW) : 1;
    localparam CW = $clog2(NW + 2);
    localparam [CW-1:0] ZERO = 0;
    localparam integer SF_LAST_I = SF - 1;
    localparam [CW-1:0] SF_LAST = SF_LAST_I[CW-1:0];
    localparam integer NW_LAST_I = NW - 1;
    localparam [CW-1:0] NW_LAST = NW_LAST_I[CW-1:0];

    // ------------------------------------------------------------------ stage A: operands
    reg                a_valid;
    reg [SIMD*EW-1:0]  a_x;
    reg [PE*SIMD-1:0]  a_w;
    reg                a_last;               // last synapse fold of a neuron fold
    reg [CW-1:0]       sf, wp;               // synapse fold, weight word
    wire a_adv = a_valid && (!a_last || !out_valid || out_ready);
    assign in_ready = !a_valid || a_adv;
    wire in_fire = in_valid && in_ready;
    wire sf_end = (sf == SF_LAST);

    always @(posedge clk) begin
        if (in_fire) begin
            a_x <= in_data;
            a_last <= sf_end;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            a_valid <= 1'b0; sf <= ZERO; wp <= ZERO;
        end else begin
            if (in_ready) a_valid <= in_valid;
            if (in_fire) begin
                sf <= sf_end ? ZERO : sf + 1'b1;
                wp <= (wp == NW_LAST) ? ZERO : wp + 1'b1;
            end
        end
    end

    generate
        if (W_STYLE == 1) begin : wblock
            (* rom_style = "block", ram_style = "block" *) reg [PE*SIMD-1:0] wrom [0:NW-1];
            initial $readmemh(W_FILE, wrom);
            always @(posedge clk) if (in_fire) a_w <= wrom[wp[WA-1:0]];
        end else if (W_STYLE == 2) begin : wlutram
            (* rom_style = "distributed", ram_style = "distributed" *) reg [PE*SIMD-1:0] wrom [0:NW-1];
            initial $readmemh(W_FILE, wrom);
            always @(posedge clk) if (in_fire) a_w <= wrom[wp[WA-1:0]];
        end else if (W_STYLE == 3) begin : wlogic
            (* rom_style = "logic", ram_style = "logic" *) reg [PE*SIMD-1:0] wrom [0:NW-1];
            initial $readmemh(W_FILE, wrom);
            always @(posedge clk) if (in_fire) a_w <= wrom[wp[WA-1:0]];
        end else begin : wauto
            reg [PE*SIMD-1:0] wrom [0:NW-1];
            initial $readmemh(W_FILE, wrom);
            always @(posedge clk) if (in_fire) a_w <= wrom[wp[WA-1:0]];
        end
    endgenerate

    // ------------------------------------------------------------------ stage B: accumulate, compare
    wire [PE*DW-1:0] result;

    generate
        if (OUT_ACC == 0) begin : thr
            localparam NA = (NF > 1) ? $clog2(NF) : 1;
            localparam integer NFL = NF - 1;
            localparam [NA-1:0] NF_LAST = NFL[NA-1:0];
            reg [PE*(AW+1)-1:0] trom [0:NF-1];
            initial $readmemh(T_FILE, trom);
            reg [PE*(AW+1)-1:0] a_t;
            reg [NA-1:0] nf;
            always @(posedge clk) begin
                if (in_fire) a_t <= trom[nf];
                if (rst) nf <= {NA{1'b0}};
                else if (in_fire && sf_end) nf <= (nf == NF_LAST) ? {NA{1'b0}} : nf + 1'b1;
            end
        end
    endgenerate

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : lane
            wire [AW-1:0] d;
            bcnn_dot #(.SIMD(SIMD), .EW(EW), .AW(AW)) dot (.x(a_x), .w(a_w[p*SIMD +: SIMD]), .y(d));
            reg  [AW-1:0] acc;
            wire [AW-1:0] sum = acc + d;
            always @(posedge clk) begin
                if (rst) acc <= {AW{1'b0}};
                else if (a_adv) acc <= a_last ? {AW{1'b0}} : sum;
            end
            if (OUT_ACC == 0) begin : cmp
                wire [AW-1:0] t = thr.a_t[p*(AW+1) +: AW];
                wire ge = thr.a_t[p*(AW+1) + AW];
                assign result[p] = ge ? ($signed(sum) >= $signed(t)) : ($signed(sum) <= $signed(t));
            end else if (EW == 1) begin : pm
                localparam [AW-1:0] FAN = FANIN;
                assign result[p*DW +: DW] = {sum[AW-2:0], 1'b0} - FAN;  // 2*popcount - FANIN (mod 2^AW)
            end else begin : raw
                assign result[p*DW +: DW] = sum;
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (a_adv && a_last) out_data <= result;
    end

    always @(posedge clk) begin
        if (rst) out_valid <= 1'b0;
        else if (a_adv && a_last) out_valid <= 1'b1;
        else if (out_ready) out_valid <= 1'b0;
    end
endmodule
