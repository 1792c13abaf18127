// grid_sample's CPU kernels compiled for AVX2 + FMA (see ../isa.h).
#define GK_ISA_LEVEL 1
#include "../grid_sample.cpp"
