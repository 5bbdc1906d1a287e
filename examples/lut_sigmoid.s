; lut_sigmoid.s -- sigmoid through look-up tables, in both ITP forms.
;
;   x [1,64] int8 s=0.05 zp=0
;   path 1: FC (w1 s=0.004) -> int16 s=8/32768: ofm_multiplier=26844, post_shift=15
;           then LUT int16 -> int16 with k=8 (257 entries, linear interpolation on the
;           low 8 bits): y16 = sigmoid, s=1/32767 zp=0
;   path 2: FC (per-channel M, post_shift=22) fused with an int8 LUT: the requantized
;           value (int8 s=1/16) indexes 256 entries: y8 = sigmoid, s=1/256 zp=-128
;
; The MAC array computes path 2 while the ITP interpolates path 1.

.data w1  int8  [32,64] file "lut_sigmoid_w1.npy"
.data b1  int16 [32]    file "lut_sigmoid_b1.npy"
.data t16 int16 [257]   file "lut_sigmoid_t16.npy"
.data w2  int8  [32,64] file "lut_sigmoid_w2.npy"
.data m2  uint16 [32]   file "lut_sigmoid_m2.npy"
.data t8  int8  [256]   file "lut_sigmoid_t8.npy"

.input  x   int8  [1,64] scale=0.05 zp=0
.output y16 int16 [1,32] scale=3.0518509475997192e-05 zp=0
.output y8  int8  [1,32] scale=0.00390625 zp=-128

.sram x_s   64
.sram w1_s  sizeof(w1)
.sram b1_s  sizeof(b1)
.sram t16_s sizeof(t16)
.sram w2_s  sizeof(w2)
.sram m2_s  sizeof(m2)
.sram t8_s  sizeof(t8)
.sram h_s   32*2                        ; FC 1 output, int16
.sram y16_s 32*2
.sram y8_s  32

dma_load dram=@x   sram=@x_s   row=64
dma_load dram=@w1  sram=@w1_s  row=sizeof(w1)
dma_load dram=@b1  sram=@b1_s  row=sizeof(b1) signal=mac
dma_load dram=@t16 sram=@t16_s row=sizeof(t16) signal=itp
dma_load dram=@w2  sram=@w2_s  row=sizeof(w2)
dma_load dram=@m2  sram=@m2_s  row=sizeof(m2)
dma_load dram=@t8  sram=@t8_s  row=sizeof(t8) signal=mac

fc ifm=@x_s[1x64 int8] ofm=@h_s[int16] ofm_c=32 w=@w1_s bias=@b1_s ofm_multiplier=26844 post_shift=15 \
   wait=dma_in signal=itp
lut ifm=@h_s[int16] ofm=@y16_s[int16] count=32 table=@t16_s lut_bits=8 wait=dma_in,mac signal=dma_out
fc ifm=@x_s[1x64 int8] ofm=@y8_s[int8] ofm_c=32 w=@w2_s multipliers=@m2_s post_shift=22 \
   lut=@t8_s lut_in_dtype=int8 wait=dma_in signal=dma_out

dma_store dram=@y16 sram=@y16_s row=sizeof(y16) wait=itp
dma_store dram=@y8  sram=@y8_s  row=sizeof(y8)  wait=mac
end
