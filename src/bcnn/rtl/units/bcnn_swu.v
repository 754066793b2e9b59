// Sliding-window unit over a ping-pong frame buffer.
//
// Write side: input pixels (C elements of EW bits, HWC raster order), one per cycle, into one of two
// frame buffers. Read side: for every output pixel (oy, ox) of the K x K stride-1 window with PAD, it
// emits the window NF times (once per neuron fold of the next unit, so the MVTU needs no window
// buffer), each time as K*K*C/SIMD chunks of SIMD elements in (kh, kw, c) order; positions outside the
// map read as PADVAL. A chunk never straddles pixels (SIMD divides C).
//
// The reader may start a frame while it is still being written: output row oy waits only until input
// row min(oy + K-1-PAD, H-1) is complete. The writer waits only when both buffers hold frames the
// reader has not finished. So the unit issues one chunk per cycle whenever its rows are present and
// the consumer is ready; bcnn.plan models exactly this.
//
// The buffer read is registered (block-RAM friendly); out_valid/out_data come from that register.
module bcnn_swu #(
    parameter H = 8,
    parameter W = 8,
    parameter C = 3,
    parameter EW = 1,
    parameter K = 3,
    parameter PAD = 1,
    parameter SIMD = 3,
    parameter NF = 1,
    parameter PADVAL = 0
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              in_valid,
    output wire              in_ready,
    input  wire [C*EW-1:0]   in_data,
    output reg               out_valid,
    input  wire              out_ready,
    output wire [SIMD*EW-1:0] out_data
);
    localparam CS = C / SIMD;                // chunks per pixel
    localparam OH = H + 2*PAD - K + 1;
    localparam OW = W + 2*PAD - K + 1;
    localparam HW = H * W;
    localparam DEPTH = 2 * HW;               // two frames
    localparam AW = $clog2(DEPTH);
    // One width for every counter and address sum in this unit keeps the arithmetic free of
    // width conversions; it holds each of the quantities below.
    localparam CW = $clog2(DEPTH + H + W + 2*PAD + K + NF + C + 2);

    localparam [CW-1:0] ZERO = 0;
    localparam integer FRAME_I = HW;
    localparam [CW-1:0] FRAME = FRAME_I[CW-1:0];          // address offset of buffer 1
    localparam integer W_LAST_I = W - 1;
    localparam [CW-1:0] W_LAST = W_LAST_I[CW-1:0];
    localparam integer H_LAST_I = H - 1;
    localparam [CW-1:0] H_LAST = H_LAST_I[CW-1:0];
    localparam integer OW_LAST_I = OW - 1;
    localparam [CW-1:0] OW_LAST = OW_LAST_I[CW-1:0];
    localparam integer OH_LAST_I = OH - 1;
    localparam [CW-1:0] OH_LAST = OH_LAST_I[CW-1:0];
    localparam integer K_LAST_I = K - 1;
    localparam [CW-1:0] K_LAST = K_LAST_I[CW-1:0];
    localparam integer NF_LAST_I = NF - 1;
    localparam [CW-1:0] NF_LAST = NF_LAST_I[CW-1:0];
    localparam integer CS_LAST_I = CS - 1;
    localparam [CW-1:0] CS_LAST = CS_LAST_I[CW-1:0];
    localparam integer LOOK_I = K - 1 - PAD;
    localparam [CW-1:0] LOOK = LOOK_I[CW-1:0];  // input rows needed below the output row
    localparam integer PADC_I = PAD;
    localparam [CW-1:0] PADC = PADC_I[CW-1:0];
    localparam integer HPAD_I = H + PAD;
    localparam [CW-1:0] HPAD = HPAD_I[CW-1:0];
    localparam integer WPAD_I = W + PAD;
    localparam [CW-1:0] WPAD = WPAD_I[CW-1:0];
    localparam [EW-1:0] PADE = PADVAL;

    reg [C*EW-1:0] mem [0:DEPTH-1];
    reg [1:0] full;  // frames completely written and not yet completely read (0..2)

    // ------------------------------------------------------------------ write side
    reg [CW-1:0] wx, wy, rows;  // rows: complete rows of the frame being written
    reg          wbuf;
    assign in_ready = (full != 2'd2);
    wire wfire = in_valid && in_ready;
    wire wrow_end = (wx == W_LAST);
    wire wframe_end = wrow_end && (wy == H_LAST);
    // Addresses are computed at the common width CW; the buffer decodes the low AW bits.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [CW-1:0] waddr = (wbuf ? FRAME : ZERO) + wy * W + wx;
    /* verilator lint_on UNUSEDSIGNAL */

    always @(posedge clk) begin
        if (wfire) mem[waddr[AW-1:0]] <= in_data;
    end

    always @(posedge clk) begin
        if (rst) begin
            wx <= ZERO; wy <= ZERO; rows <= ZERO; wbuf <= 1'b0;
        end else if (wfire) begin
            if (!wrow_end) begin
                wx <= wx + 1'b1;
            end else begin
                wx <= ZERO;
                if (wframe_end) begin
                    wy <= ZERO; rows <= ZERO; wbuf <= ~wbuf;
                end else begin
                    wy <= wy + 1'b1; rows <= rows + 1'b1;
                end
            end
        end
    end

    // ------------------------------------------------------------------ read side
    reg [CW-1:0] oy, ox, nf, kh, kw, cs;
    reg          rbuf;
    // With full == 0 the reader works on the frame being written (same buffer) and needs its rows.
    wire rows_ok = (full != 2'd0) || (rows > oy + LOOK);
    wire rd_ready = !out_valid || out_ready;
    wire rfire = rows_ok && rd_ready;

    wire c_end = (cs == CS_LAST);
    wire kw_end = c_end && (kw == K_LAST);
    wire kh_end = kw_end && (kh == K_LAST);
    wire nf_end = kh_end && (nf == NF_LAST);
    wire ox_end = nf_end && (ox == OW_LAST);
    wire frame_end = ox_end && (oy == OH_LAST);

    wire [CW-1:0] ty = oy + kh;  // padded-map coordinates
    wire [CW-1:0] tx = ox + kw;
    wire in_map;
    generate
        if (PAD == 0) begin : nopad  // (ty >= 0 always holds; spelled out it is a lint warning)
            assign in_map = (ty < HPAD) && (tx < WPAD);
        end else begin : padded
            assign in_map = (ty >= PADC) && (ty < HPAD) && (tx >= PADC) && (tx < WPAD);
        end
    endgenerate
    wire [CW-1:0] raddr_full = (rbuf ? FRAME : ZERO) + (ty - PADC) * W + (tx - PADC);
    /* verilator lint_off UNUSEDSIGNAL */
    wire [CW-1:0] raddr = in_map ? raddr_full : ZERO;  // low AW bits used
    /* verilator lint_on UNUSEDSIGNAL */

    reg [C*EW-1:0] q;
    reg            q_pad;
    reg [CW-1:0]   q_cs;

    always @(posedge clk) begin
        if (rfire) begin
            q <= mem[raddr[AW-1:0]];
            q_pad <= !in_map;
            q_cs <= cs;
        end
    end

    always @(posedge clk) begin
        if (rst) out_valid <= 1'b0;
        else if (rd_ready) out_valid <= rows_ok;
    end

    always @(posedge clk) begin
        if (rst) begin
            oy <= ZERO; ox <= ZERO; nf <= ZERO; kh <= ZERO; kw <= ZERO; cs <= ZERO; rbuf <= 1'b0;
        end else if (rfire) begin
            cs <= c_end ? ZERO : cs + 1'b1;
            if (c_end) kw <= kw_end ? ZERO : kw + 1'b1;
            if (kw_end) kh <= kh_end ? ZERO : kh + 1'b1;
            if (kh_end) nf <= nf_end ? ZERO : nf + 1'b1;
            if (nf_end) ox <= ox_end ? ZERO : ox + 1'b1;
            if (ox_end) oy <= frame_end ? ZERO : oy + 1'b1;
            if (frame_end) rbuf <= ~rbuf;
        end
    end

    // ------------------------------------------------------------------ frame accounting
    wire wdone = wfire && wframe_end;
    wire rdone = rfire && frame_end;
    always @(posedge clk) begin
        if (rst) full <= 2'd0;
        else if (wdone && !rdone) full <= full + 2'd1;
        else if (rdone && !wdone) full <= full - 2'd1;
    end

    // ------------------------------------------------------------------ output chunk
    generate
        if (CS == 1) begin : whole
            assign out_data = q_pad ? {SIMD{PADE}} : q;
            wire unused_cs = &{1'b0, q_cs};  // one chunk per pixel: nothing to select
        end else begin : part
            assign out_data = q_pad ? {SIMD{PADE}} : q[q_cs*(SIMD*EW) +: SIMD*EW];
        end
    endgenerate
endmodule
