// instance_norm_act's CPU kernels compiled for AVX2 + FMA (see ../isa.h).
#define GK_ISA_LEVEL 1
#include "../instance_norm.cpp"
