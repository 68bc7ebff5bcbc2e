// The CPU op set the forward pass calls. One header per op family; this one includes them all.
// Every op has a plain reference (*_ref) and a fast version that dispatches on active_isa().
#pragma once
#include "ferry/ops/attention.h"
#include "ferry/ops/elementwise.h"
#include "ferry/ops/expert_ffn.h"
#include "ferry/ops/isa.h"
#include "ferry/ops/matmul.h"
#include "ferry/ops/norm.h"
#include "ferry/ops/packed_matrix.h"
#include "ferry/ops/rope.h"
#include "ferry/ops/router.h"
