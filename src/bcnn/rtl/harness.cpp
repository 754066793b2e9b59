// Verilator harness for any generated bcnn_top (see bcnn.sim). Compile-time defines:
//   PIX_BYTES  channels per pixel (input beat = PIX_BYTES raw bytes, channel c at bits [8c+7:8c])
//   IMG_PIXELS pixels per image (H*W)
//   N_OUT      output beats per image
//   ACC_BITS   width of a signed output beat
// Usage: harness IMAGES.bin N OUTPUTS.bin STAMPS.bin MAX_IDLE [RESET_AT RESUME]
//   Phase 1 streams image 0 alone into the empty pipeline (latency); phase 2 streams all N images
//   back to back with out_ready held high. Outputs (int64, N x N_OUT) and stamps are from phase 2.
//   STAMPS.bin: int64 [lat_first_in, lat_last_out, first_in[0..N), last_out[0..N)], in clock edges.
//   RESET_AT (phase-2 edge count) asserts rst for 2 cycles, then streaming restarts at image RESUME.
// The generated top's in_ready, out_valid and out_data depend only on registers (not on in_valid or
// out_ready), so they are sampled before the inputs of the cycle are applied.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "Vbcnn_top.h"
#include "verilated.h"

static Vbcnn_top* top;
static uint64_t edge_count = 0;

static void tick() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
    ++edge_count;
}

static void set_pixel(const uint8_t* px) {
#if PIX_BYTES > 8
    for (int w = 0; w < (PIX_BYTES + 3) / 4; ++w) {
        uint32_t v = 0;
        for (int b = 0; b < 4 && 4 * w + b < PIX_BYTES; ++b) v |= uint32_t(px[4 * w + b]) << (8 * b);
        top->in_data[w] = v;
    }
#else
    uint64_t v = 0;
    for (int c = 0; c < PIX_BYTES; ++c) v |= uint64_t(px[c]) << (8 * c);
    top->in_data = v;
#endif
}

static int64_t get_output() {
    uint64_t v = uint64_t(top->out_data);
    const int shift = 64 - ACC_BITS;
    return int64_t(v << shift) >> shift;  // sign-extend
}

static void reset() {
    top->rst = 1;
    top->in_valid = 0;
    top->out_ready = 1;
    for (int i = 0; i < 2; ++i) tick();
    top->rst = 0;
}

static void fail(const char* what) {
    fprintf(stderr, "harness: %s\n", what);
    exit(3);
}

// Stream images [first, n) until all their outputs are out; returns false on deadlock (max_idle
// edges without a transfer). reset_at < 0 disables the mid-stream reset.
static bool stream(const uint8_t* images, int64_t first, int64_t n, int64_t* outputs, int64_t* first_in,
                   int64_t* last_out, uint64_t max_idle, int64_t reset_at, int64_t resume) {
    const int64_t img_bytes = int64_t(IMG_PIXELS) * PIX_BYTES;
    int64_t in_pix = first * IMG_PIXELS, end_pix = n * IMG_PIXELS;
    int64_t out_beat = first * N_OUT, end_beat = n * N_OUT;
    const uint64_t start = edge_count;
    uint64_t idle = 0;
    // progress on stderr every 10 s of wall time: a full-size network simulates at ~1k cycles/s
    auto last_report = std::chrono::steady_clock::now();
    top->out_ready = 1;
    while (out_beat < end_beat) {
        if (reset_at >= 0 && edge_count - start == uint64_t(reset_at)) {
            reset();
            reset_at = -1;
            in_pix = resume * IMG_PIXELS;
            out_beat = resume * N_OUT;
            continue;
        }
        const bool in_ok = in_pix < end_pix;
        top->in_valid = in_ok;
        if (in_ok) set_pixel(images + (in_pix / IMG_PIXELS) * img_bytes + (in_pix % IMG_PIXELS) * PIX_BYTES);
        const bool in_fire = in_ok && top->in_ready;
        const bool out_fire = top->out_valid;
        if (in_fire) {
            if (in_pix % IMG_PIXELS == 0 && first_in) first_in[in_pix / IMG_PIXELS] = int64_t(edge_count - start);
            ++in_pix;
        }
        if (out_fire) {
            outputs[out_beat] = get_output();
            ++out_beat;
            if (out_beat % N_OUT == 0 && last_out) last_out[out_beat / N_OUT - 1] = int64_t(edge_count - start);
        }
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (idle > max_idle) return false;
        tick();
        if ((edge_count & 1023) == 0 && std::chrono::steady_clock::now() - last_report > std::chrono::seconds(10)) {
            last_report = std::chrono::steady_clock::now();
            fprintf(stderr, "harness: %lld/%lld images out after %llu cycles\n", (long long)(out_beat / N_OUT),
                    (long long)n, (unsigned long long)(edge_count - start));
        }
    }
    top->in_valid = 0;
    return true;
}

int main(int argc, char** argv) {
    if (argc != 6 && argc != 8) fail("usage: harness IMAGES N OUTPUTS STAMPS MAX_IDLE [RESET_AT RESUME]");
    const int64_t n = atoll(argv[2]);
    const uint64_t max_idle = strtoull(argv[5], nullptr, 10);
    const int64_t reset_at = argc == 8 ? atoll(argv[6]) : -1;
    const int64_t resume = argc == 8 ? atoll(argv[7]) : 0;
    const int64_t img_bytes = int64_t(IMG_PIXELS) * PIX_BYTES;
    std::vector<uint8_t> images(size_t(n * img_bytes));
    FILE* f = fopen(argv[1], "rb");
    if (!f || fread(images.data(), 1, images.size(), f) != images.size()) fail("cannot read the images");
    fclose(f);

    VerilatedContext* ctx = new VerilatedContext;
    top = new Vbcnn_top{ctx};
    top->clk = 0;
    top->eval();
    reset();

    std::vector<int64_t> outputs(size_t(n * N_OUT)), stamps(size_t(2 + 2 * n), -1);
    // phase 1: image 0 alone, for the latency
    std::vector<int64_t> lat_out(N_OUT);
    int64_t lat_first = -1, lat_last = -1;
    if (!stream(images.data(), 0, 1, lat_out.data(), &lat_first, &lat_last, max_idle, -1, 0))
        fail("deadlock: no transfer for MAX_IDLE cycles (latency run)");
    for (int i = 0; i < 5; ++i) tick();  // the pipeline is empty again; leave a gap
    stamps[0] = lat_first;
    stamps[1] = lat_last;
    // phase 2: all images back to back
    if (!stream(images.data(), 0, n, outputs.data(), stamps.data() + 2, stamps.data() + 2 + n, max_idle,
                reset_at, resume))
        fail("deadlock: no transfer for MAX_IDLE cycles");

    FILE* o = fopen(argv[3], "wb");
    FILE* s = fopen(argv[4], "wb");
    if (!o || !s) fail("cannot write the results");
    fwrite(outputs.data(), sizeof(int64_t), outputs.size(), o);
    fwrite(stamps.data(), sizeof(int64_t), stamps.size(), s);
    fclose(o);
    fclose(s);
    printf("%llu\n", (unsigned long long)edge_count);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
