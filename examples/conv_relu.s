; conv_relu.s -- one 3x3 convolution + ReLU layer, tiled in two row bands so the
; DMA-in, MAC and DMA-out units overlap.
;
;   x [1,8,8,16] int8 (scale 0.05, zp -3)  --conv 3x3 pad 1, 32 filters, ReLU-->
;   y [1,8,8,32] int8 (scale 0.25, zp -20)
;
; Quantization (examples/gen_data.py): per-channel weight scales s_w[c], so
; M[c] = round(0.05 * s_w[c] / 0.25 * 2^23) with pre_shift=1, post_shift=22;
; bias b16 = round(bias / (0.05 * s_w[c]) / 4) with bias_shift=2.
; ReLU = clamp at the output zero point: act=-20..127.

.const H = 8
.const W = 8
.const CIN = 16
.const COUT = 32
.const BAND = 4                          ; output rows per tile

; constant data in DRAM (placed from .data_base, 64-byte aligned)
.data w int8 [COUT,3,3,CIN] file "conv_relu_w.npy"
.data b int16 [COUT] file "conv_relu_b.npy"
.data m uint16 [COUT] file "conv_relu_m.npy"

; I/O table (placed after the constants)
.input  x int8 [1,H,W,CIN]  scale=0.05 zp=-3
.output y int8 [1,H,W,COUT] scale=0.25 zp=-20

; SRAM buffers
.sram w_s sizeof(w)
.sram b_s sizeof(b)
.sram m_s sizeof(m)
.sram x0_s (BAND+1)*W*CIN                 ; input rows 0..4 (halo row 4)
.sram x1_s (BAND+1)*W*CIN                 ; input rows 3..7 (halo row 3)
.sram y0_s BAND*W*COUT
.sram y1_s BAND*W*COUT

; ---- DMA-in: parameters, then the two input bands (each signals the MAC array)
dma_load dram=@w sram=@w_s row=sizeof(w)
dma_load dram=@b sram=@b_s row=sizeof(b)
dma_load dram=@m sram=@m_s row=sizeof(m)
dma_load dram=@x sram=@x0_s row=(BAND+1)*W*CIN signal=mac
dma_load dram=@x+(BAND-1)*W*CIN sram=@x1_s row=(BAND+1)*W*CIN signal=mac

; ---- MAC: band 0 (padding on top only), band 1 (padding at the bottom only)
conv ifm=@x0_s[5x8x16 int8] ofm=@y0_s[4x8x32 int8] w=@w_s k=3x3 pad=1,1,0,1 \
     bias=@b_s bias_shift=2 multipliers=@m_s ifm_zp=-3 ofm_zp=-20 pre_shift=1 post_shift=22 \
     act=-20..127 wait=dma_in signal=dma_out
conv ifm=@x1_s[5x8x16 int8] ofm=@y1_s[4x8x32 int8] w=@w_s k=3x3 pad=0,1,1,1 \
     bias=@b_s bias_shift=2 multipliers=@m_s ifm_zp=-3 ofm_zp=-20 pre_shift=1 post_shift=22 \
     act=-20..127 wait=dma_in signal=dma_out

; ---- DMA-out: band 0 is stored while the MAC array computes band 1
dma_store dram=@y sram=@y0_s row=BAND*W*COUT wait=mac
dma_store dram=@y+BAND*W*COUT sram=@y1_s row=BAND*W*COUT wait=mac
end
