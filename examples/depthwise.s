; depthwise.s -- a depthwise 3x3 stride-2 layer with ReLU6, then a global average pool.
;
;   x [1,16,16,32] uint8 s=0.02 zp=128
;   d = ReLU6(depthwise 3x3, stride 2, pad 1)  -> [1,8,8,32] uint8 s=0.05 zp=0
;       per-channel M = round(0.02 * s_w[c] / 0.05 * 2^21) (pre 0, post 21); ReLU6 = 0..120
;   p = global average pool of d               -> [1,1,1,32] uint8 s=0.05 zp=0
;       m = 2^16 / 64 = 1024, shift 16: an exact mean with round half up
;
; The MAC array (depthwise: one column per channel) hands the map to the ITP for the
; pool while DMA-out already stores the map.

.data wd int8 [32,3,3,1] file "depthwise_w.npy"
.data b int16 [32] file "depthwise_b.npy"
.data m uint16 [32] file "depthwise_m.npy"

.input  x uint8 [1,16,16,32] scale=0.02 zp=128
.output d uint8 [1,8,8,32]   scale=0.05 zp=0
.output p uint8 [1,1,1,32]   scale=0.05 zp=0

.sram x_s 16*16*32
.sram d_s 8*8*32
.sram p_s 32
.sram w_s sizeof(wd)
.sram b_s sizeof(b)
.sram m_s sizeof(m)

dma_load dram=@wd sram=@w_s row=sizeof(wd)
dma_load dram=@b sram=@b_s row=sizeof(b)
dma_load dram=@m sram=@m_s row=sizeof(m)
dma_load dram=@x sram=@x_s row=sizeof(x) signal=mac

conv ifm=@x_s[16x16x32 uint8] ofm=@d_s[8x8x32 uint8] w=@w_s depthwise=1 k=3x3 stride=2x2 \
     pad=1 bias=@b_s multipliers=@m_s ifm_zp=128 post_shift=21 act=0..120 \
     wait=dma_in signal=itp,dma_out

pool op=avg ifm=@d_s[8x8x32 uint8] ofm_addr=@p_s ofm_h=1 ofm_w=1 ofm_dtype=uint8 k=8x8 \
     stride=8x8 ofm_multiplier=1024 post_shift=16 wait=mac signal=dma_out

dma_store dram=@d sram=@d_s row=sizeof(d) wait=mac
dma_store dram=@p sram=@p_s row=sizeof(p) wait=itp
end
