// bias_act's CPU kernels compiled for AVX2 + FMA (see ../isa.h).
#define GK_ISA_LEVEL 1
#include "../bias_act.cpp"
