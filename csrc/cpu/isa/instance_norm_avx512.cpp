// instance_norm_act's CPU kernels compiled for AVX-512 (see ../isa.h).
#define GK_ISA_LEVEL 2
#include "../instance_norm.cpp"
