// 8-bit unsigned multiplier: p = a * b, built from gates (the * operator is not allowed).
// EVOLVE-BLOCK-START
// Full adder: s = x + y + c (mod 2), co = carry out.
module fa(input x, input y, input c, output s, output co);
  assign s = x ^ y ^ c;
  assign co = (x & y) | (x & c) | (y & c);
endmodule

// Carry-save array multiplier. Row i adds partial product i (a AND b[i], weight 2^i) to the sum
// and carry vectors of row i-1; the low product bits drop out of the array one per row and the
// high byte comes from a final adder over the last row's sum and carry vectors.
module mult8(input [7:0] a, input [7:0] b, output [15:0] p);
  wire [7:0] pp [0:7];
  wire [7:0] s [0:7];
  wire [7:0] c [0:7];
  genvar i, j, k;
  generate
    for (i = 0; i < 8; i = i + 1) begin : g_pp
      assign pp[i] = a & {8{b[i]}};
    end
    assign s[0] = pp[0];
    assign c[0] = 8'd0;
    for (i = 1; i < 8; i = i + 1) begin : g_row
      for (j = 0; j < 8; j = j + 1) begin : g_col
        // column j of row i has weight i + j: the sum bit of the same weight is s[i-1][j+1]
        wire above;
        if (j < 7) begin : g_in
          assign above = s[i-1][j+1];
        end else begin : g_top
          assign above = 1'b0;
        end
        fa u(.x(pp[i][j]), .y(above), .c(c[i-1][j]), .s(s[i][j]), .co(c[i][j]));
      end
    end
    for (k = 0; k < 8; k = k + 1) begin : g_low
      assign p[k] = s[k][0];
    end
  endgenerate

  // Final adder for p[14:8] = x + y: a carry-select adder in blocks of 2**LOG_BLOCK bits. Every
  // block computes its sum for a carry-in of 0 and of 1, and a multiplexer picks one when the
  // block's real carry-in arrives. LOG_BLOCK = 3 makes one block: a plain ripple-carry adder.
  localparam LOG_BLOCK = 3;
  wire [6:0] x = s[7][7:1];
  wire [6:0] y = c[7][6:0];
  wire [7:0] c0, c1;  // ripple carries inside a block, for a block carry-in of 0 and of 1
  wire [6:0] s0, s1;  // sums for a block carry-in of 0 and of 1
  wire [6:0] bcin;    // the real carry into the block that holds bit k
  generate
    for (k = 0; k < 7; k = k + 1) begin : g_final
      if (((k >> LOG_BLOCK) << LOG_BLOCK) == k) begin : g_start
        if (k == 0) begin : g_first
          assign bcin[k] = 1'b0;
        end else begin : g_next
          assign bcin[k] = bcin[k-1] ? c1[k] : c0[k];
        end
        fa f0(.x(x[k]), .y(y[k]), .c(1'b0), .s(s0[k]), .co(c0[k+1]));
        fa f1(.x(x[k]), .y(y[k]), .c(1'b1), .s(s1[k]), .co(c1[k+1]));
      end else begin : g_inner
        assign bcin[k] = bcin[k-1];
        fa f0(.x(x[k]), .y(y[k]), .c(c0[k]), .s(s0[k]), .co(c0[k+1]));
        fa f1(.x(x[k]), .y(y[k]), .c(c1[k]), .s(s1[k]), .co(c1[k+1]));
      end
      assign p[8+k] = bcin[k] ? s1[k] : s0[k];
    end
  endgenerate
  // the product fits in 16 bits, so the two carries into bit 15 are never both 1
  assign p[15] = c[7][7] | (bcin[6] ? c1[7] : c0[7]);
endmodule
// EVOLVE-BLOCK-END
