; residual_add.s -- a residual block: y = ReLU(conv2(ReLU(conv1(x))) + x).
;
;   x  [1,8,8,16] int8 s=0.05 zp=0
;   h1 = ReLU(conv1 3x3 pad 1)  int8 s=0.25 zp=0   per-channel M (pre 2, post 20)
;   h2 = conv2 3x3 pad 1        int8 s=0.30 zp=0   per-tensor M = 27962 (pre 2, post 20)
;   y  = ReLU(h2 + x)           int8 s=0.35 zp=-128
;        add: Ma = round(0.30/0.35 * 2^15) = 28087, Mb = round(0.05/0.35 * 2^15) = 4681, shift 15
;
; Units: DMA-in loads conv2's weights while conv1 runs; the ITP adds while DMA-out waits.

.const HWC = 8*8*16

.data w1 int8 [16,3,3,16] file "residual_add_w1.npy"
.data b1 int16 [16] file "residual_add_b1.npy"
.data m1 uint16 [16] file "residual_add_m1.npy"
.data w2 int8 [16,3,3,16] file "residual_add_w2.npy"
.data b2 int16 [16] file "residual_add_b2.npy"

.input  x int8 [1,8,8,16] scale=0.05 zp=0
.output y int8 [1,8,8,16] scale=0.35 zp=-128

.sram x_s  HWC
.sram h1_s HWC
.sram h2_s HWC
.sram w1_s sizeof(w1)
.sram b1_s sizeof(b1)
.sram m1_s sizeof(m1)
.sram w2_s sizeof(w2)
.sram b2_s sizeof(b2)

; DMA-in: everything conv1 needs, one token; then conv2's parameters, a second token
dma_load dram=@x sram=@x_s row=HWC
dma_load dram=@w1 sram=@w1_s row=sizeof(w1)
dma_load dram=@b1 sram=@b1_s row=sizeof(b1)
dma_load dram=@m1 sram=@m1_s row=sizeof(m1) signal=mac
dma_load dram=@w2 sram=@w2_s row=sizeof(w2)
dma_load dram=@b2 sram=@b2_s row=sizeof(b2) signal=mac

conv1:
conv ifm=@x_s[8x8x16 int8] ofm=@h1_s[8x8x16 int8] w=@w1_s k=3x3 pad=1 \
     bias=@b1_s multipliers=@m1_s pre_shift=2 post_shift=20 act=0..127 wait=dma_in
conv2:
conv ifm=@h1_s[8x8x16 int8] ofm=@h2_s[8x8x16 int8] w=@w2_s k=3x3 pad=1 \
     bias=@b2_s bias_shift=1 ofm_multiplier=27962 pre_shift=2 post_shift=20 wait=dma_in signal=itp

; ITP: the residual add, in place into h2's buffer (same address and size is allowed)
eltwise op=add ifm=@h2_s[int8] ifm2=@x_s[int8] ofm=@h2_s[int8] count=HWC \
        ifm_multiplier=28087 ifm2_multiplier=4681 post_shift=15 ofm_zp=-128 act=-128..127 wait=mac signal=dma_out

dma_store dram=@y sram=@h2_s row=HWC wait=itp
end
