// upfirdn2d's CPU kernels compiled for AVX2 + FMA (see ../isa.h).
#define GK_ISA_LEVEL 1
#include "../upfirdn2d.cpp"
