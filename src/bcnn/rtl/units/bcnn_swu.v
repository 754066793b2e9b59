// Sliding-window unit over a banked ping-pong frame buffer.
//
// Write side: input pixels (C elements of EW bits, HWC raster order), one per cycle, into one of two
// frame buffers. Read side: for every output pixel (oy, ox) of the K x K stride-1 window with PAD, it
// emits the window NF times (once per neuron fold of the next unit, so the MVTU needs no window
// buffer), each time as K*K*C/SIMD chunks of SIMD elements in (kh, kw, c) order; positions outside the
// map read as PADVAL. A chunk is a contiguous run of that order, of one of three shapes:
//   BH = BW = 1:        SIMD divides C, a chunk is part of one pixel (C/SIMD chunks per pixel);
//   BH = 1, BW > 1:     SIMD = BW*C, BW pixels of one kernel row (BW divides K);
//   BH > 1, BW = K:     SIMD = BH*K*C, BH whole kernel rows (BH divides K).
// To read BH x BW pixels in one cycle, the buffer is split into BH*BW banks: padded map position
// (py, px) lives in bank (py mod BH, px mod BW) at word (py div BH, px div BW), so any BH x BW block of
// positions meets every bank once; the registered bank outputs are rotated into window order.
//
// The reader may start a frame while it is still being written: output row oy waits only until input
// row min(oy + K-1-PAD, H-1) is complete. The writer waits only when both buffers hold frames the
// reader has not finished. So the unit issues one chunk per cycle whenever its rows are present and
// the consumer is ready; bcnn.plan models exactly this.
//
// Bank reads are registered (block-RAM friendly); out_valid/out_data come from those registers.
module bcnn_swu #(
    parameter H = 8,
    parameter W = 8,
    parameter C = 3,
    parameter EW = 1,
    parameter K = 3,
    parameter PAD = 1,
    parameter SIMD = 3,
    parameter BH = 1,
    parameter BW = 1,
    parameter NF = 1,
    parameter PADVAL = 0,
    parameter B_STYLE = 0   // banks in: 0 = the synthesizer decides, 1 = block RAM, 2 = LUT RAM
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
    localparam NB = BH * BW;                 // banks
    localparam CS = (NB == 1) ? C / SIMD : 1;  // chunks per pixel
    localparam PW = C * EW;                  // bits of a pixel
    localparam OH = H + 2*PAD - K + 1;
    localparam OW = W + 2*PAD - K + 1;
    localparam HB = (H + 2*PAD + BH - 1) / BH;  // bank words per frame, along y and x
    localparam WB = (W + 2*PAD + BW - 1) / BW;
    localparam FD = HB * WB;                 // words of one frame in one bank
    localparam DEPTH = 2 * FD;               // two frames
    localparam AW = $clog2(DEPTH);
    // One width for every counter and address sum in this unit keeps the arithmetic free of
    // width conversions; it holds each of the quantities below.
    localparam CW = $clog2(DEPTH + H + W + 2*PAD + K + NF + C + BH + BW + 2) + 1;

    localparam [CW-1:0] ZERO = 0;
    localparam [CW-1:0] ONE = 1;
    localparam integer FD_I = FD;
    localparam [CW-1:0] FRAME = FD_I[CW-1:0];             // word offset of buffer 1
    localparam integer WB_I = WB;
    localparam [CW-1:0] WBC = WB_I[CW-1:0];
    localparam integer BH_I = BH;
    localparam [CW-1:0] BHC = BH_I[CW-1:0];
    localparam integer BW_I = BW;
    localparam [CW-1:0] BWC = BW_I[CW-1:0];
    localparam integer BH_LAST_I = BH - 1;
    localparam [CW-1:0] BH_LAST = BH_LAST_I[CW-1:0];
    localparam integer BW_LAST_I = BW - 1;
    localparam [CW-1:0] BW_LAST = BW_LAST_I[CW-1:0];
    localparam integer W_LAST_I = W - 1;
    localparam [CW-1:0] W_LAST = W_LAST_I[CW-1:0];
    localparam integer H_LAST_I = H - 1;
    localparam [CW-1:0] H_LAST = H_LAST_I[CW-1:0];
    localparam integer OW_LAST_I = OW - 1;
    localparam [CW-1:0] OW_LAST = OW_LAST_I[CW-1:0];
    localparam integer OH_LAST_I = OH - 1;
    localparam [CW-1:0] OH_LAST = OH_LAST_I[CW-1:0];
    localparam integer KH_LAST_I = K - BH;
    localparam [CW-1:0] KH_LAST = KH_LAST_I[CW-1:0];      // last kernel row group (step BH)
    localparam integer KW_LAST_I = K - BW;
    localparam [CW-1:0] KW_LAST = KW_LAST_I[CW-1:0];      // last kernel column group (step BW)
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
    localparam integer PYB_I = PAD % BH;
    localparam [CW-1:0] PYB = PYB_I[CW-1:0];    // bank coordinates of map position (0, 0)
    localparam integer PYQ_I = PAD / BH;
    localparam [CW-1:0] PYQ = PYQ_I[CW-1:0];
    localparam integer PXB_I = PAD % BW;
    localparam [CW-1:0] PXB = PXB_I[CW-1:0];
    localparam integer PXQ_I = PAD / BW;
    localparam [CW-1:0] PXQ = PXQ_I[CW-1:0];
    localparam [EW-1:0] PADE = PADVAL;

    reg [1:0] full;  // frames completely written and not yet completely read (0..2)

    // ------------------------------------------------------------------ write side
    reg [CW-1:0] wx, wy, rows;  // rows: complete rows of the frame being written
    reg [CW-1:0] wyb, wyq, wxb, wxq;  // bank row/column and word coordinates of (wy+PAD, wx+PAD)
    reg          wbuf;
    assign in_ready = (full != 2'd2);
    wire wfire = in_valid && in_ready;
    wire wrow_end = (wx == W_LAST);
    wire wframe_end = wrow_end && (wy == H_LAST);
    // Addresses are computed at the common width CW; the banks decode the low AW bits.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [CW-1:0] waddr = (wbuf ? FRAME : ZERO) + wyq * WBC + wxq;
    /* verilator lint_on UNUSEDSIGNAL */

    always @(posedge clk) begin
        if (rst) begin
            wx <= ZERO; wy <= ZERO; rows <= ZERO; wbuf <= 1'b0;
            wxb <= PXB; wxq <= PXQ; wyb <= PYB; wyq <= PYQ;
        end else if (wfire) begin
            if (!wrow_end) begin
                wx <= wx + 1'b1;
                if (wxb == BW_LAST) begin wxb <= ZERO; wxq <= wxq + 1'b1; end
                else wxb <= wxb + 1'b1;
            end else begin
                wx <= ZERO; wxb <= PXB; wxq <= PXQ;
                if (wframe_end) begin
                    wy <= ZERO; rows <= ZERO; wbuf <= ~wbuf; wyb <= PYB; wyq <= PYQ;
                end else begin
                    wy <= wy + 1'b1; rows <= rows + 1'b1;
                    if (wyb == BH_LAST) begin wyb <= ZERO; wyq <= wyq + 1'b1; end
                    else wyb <= wyb + 1'b1;
                end
            end
        end
    end

    // ------------------------------------------------------------------ read side
    reg [CW-1:0] oy, ox, nf, kh, kw, cs;  // kh, kw: first kernel row/column of the chunk
    reg          rbuf;
    // With full == 0 the reader works on the frame being written (same buffer) and needs its rows.
    wire rows_ok = (full != 2'd0) || (rows > oy + LOOK);
    wire rd_ready = !out_valid || out_ready;
    wire rfire = rows_ok && rd_ready;

    wire c_end = (cs == CS_LAST);
    wire kw_end = c_end && (kw == KW_LAST);
    wire kh_end = kw_end && (kh == KH_LAST);
    wire nf_end = kh_end && (nf == NF_LAST);
    wire ox_end = nf_end && (ox == OW_LAST);
    wire frame_end = ox_end && (oy == OH_LAST);

    wire [CW-1:0] py0 = oy + kh;  // padded-map position of the chunk's first pixel
    wire [CW-1:0] px0 = ox + kw;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [CW-1:0] ya = py0 % BHC;  // its bank row and column
    wire [CW-1:0] xa = px0 % BWC;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [CW-1:0] yq = py0 / BHC;
    wire [CW-1:0] xq = px0 / BWC;
    wire [CW-1:0] fbase = rbuf ? FRAME : ZERO;

    wire [NB*PW-1:0] bank_q;  // registered bank outputs, padding applied; bank (bh, bw) at bh*BW + bw

    genvar bh, bw;
    generate
        for (bh = 0; bh < BH; bh = bh + 1) begin : brow
            for (bw = 0; bw < BW; bw = bw + 1) begin : bcol
                localparam integer BHI_I = bh;
                localparam [CW-1:0] BHI = BHI_I[CW-1:0];
                localparam integer BWI_I = bw;
                localparam [CW-1:0] BWI = BWI_I[CW-1:0];
                wire we = wfire && wyb == BHI && wxb == BWI;
                reg [PW-1:0] q;
                reg          q_pad;
                // this bank holds the chunk pixel at padded row ry*BH + bh, column rx*BW + bw
                wire [CW-1:0] ry = (BHI < ya) ? yq + ONE : yq;
                wire [CW-1:0] rx = (BWI < xa) ? xq + ONE : xq;
                wire [CW-1:0] py = ry * BHC + BHI;
                wire [CW-1:0] px = rx * BWC + BWI;
                wire in_map;
                if (PAD == 0) begin : nopad  // (py >= 0 always holds; spelled out it is a lint warning)
                    assign in_map = (py < HPAD) && (px < WPAD);
                end else begin : padded
                    assign in_map = (py >= PADC) && (py < HPAD) && (px >= PADC) && (px < WPAD);
                end
                /* verilator lint_off UNUSEDSIGNAL */
                wire [CW-1:0] raddr = in_map ? fbase + ry * WBC + rx : ZERO;  // low AW bits used
                /* verilator lint_on UNUSEDSIGNAL */
                if (B_STYLE == 1) begin : mblock
                    (* ram_style = "block" *) reg [PW-1:0] mem [0:DEPTH-1];
                    always @(posedge clk) begin
                        if (we) mem[waddr[AW-1:0]] <= in_data;
                        if (rfire) q <= mem[raddr[AW-1:0]];
                    end
                end else if (B_STYLE == 2) begin : mlut
                    (* ram_style = "distributed" *) reg [PW-1:0] mem [0:DEPTH-1];
                    always @(posedge clk) begin
                        if (we) mem[waddr[AW-1:0]] <= in_data;
                        if (rfire) q <= mem[raddr[AW-1:0]];
                    end
                end else begin : mauto
                    reg [PW-1:0] mem [0:DEPTH-1];
                    always @(posedge clk) begin
                        if (we) mem[waddr[AW-1:0]] <= in_data;
                        if (rfire) q <= mem[raddr[AW-1:0]];
                    end
                end
                always @(posedge clk) begin
                    if (rfire) q_pad <= !in_map;
                end
                assign bank_q[(bh*BW + bw)*PW +: PW] = q_pad ? {C{PADE}} : q;
            end
        end
    endgenerate

    reg [CW-1:0] q_cs, q_ya, q_xa;
    always @(posedge clk) begin
        if (rfire) begin
            q_cs <= cs; q_ya <= ya; q_xa <= xa;
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
            if (c_end) kw <= kw_end ? ZERO : kw + BWC;
            if (kw_end) kh <= kh_end ? ZERO : kh + BHC;
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
    genvar i, j;
    generate
        if (NB == 1) begin : one
            wire unused_rot = &{1'b0, q_ya, q_xa};  // one bank: nothing to rotate
            if (CS == 1) begin : whole
                assign out_data = bank_q;
                wire unused_cs = &{1'b0, q_cs};  // one chunk per pixel: nothing to select
            end else begin : part
                assign out_data = bank_q[q_cs*(SIMD*EW) +: SIMD*EW];
            end
        end else begin : rot
            wire unused_cs = &{1'b0, q_cs};  // a chunk spans whole pixels
            // window element (i, j) of the chunk comes from bank ((i + ya) mod BH, (j + xa) mod BW)
            for (i = 0; i < BH; i = i + 1) begin : er
                for (j = 0; j < BW; j = j + 1) begin : ec
                    localparam integer I_I = i;
                    localparam [CW-1:0] IC = I_I[CW-1:0];
                    localparam integer J_I = j;
                    localparam [CW-1:0] JC = J_I[CW-1:0];
                    wire [CW-1:0] ys = q_ya + IC;
                    wire [CW-1:0] xs = q_xa + JC;
                    wire [CW-1:0] yb = (ys >= BHC) ? ys - BHC : ys;
                    wire [CW-1:0] xb = (xs >= BWC) ? xs - BWC : xs;
                    wire [CW-1:0] sel = yb * BWC + xb;
                    assign out_data[(i*BW + j)*PW +: PW] = bank_q[sel*PW +: PW];
                end
            end
        end
    endgenerate
endmodule
