// Row normalisations over the last dimension: x, y [rows, n] (y may alias x).
#pragma once

namespace ferry::cpu {

// y = x / sqrt(mean(x^2) + eps) * w.  w [n].
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps);
void rms_norm_ref(const float* x, const float* w, float* y, int rows, int n, float eps);

// y = (x - mean) / sqrt(var + eps) * w + b.  w [n], b [n] or null (no bias).
void layer_norm(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps);
void layer_norm_ref(const float* x, const float* w, const float* b, float* y, int rows, int n, float eps);

}  // namespace ferry::cpu
