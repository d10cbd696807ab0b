// Weight-only int8 linear for CPU decoding: y[m, n] = scale[n] * sum_k x[m, k] * w[n, k].
//
// Decoding is bound by reading the weights, so they stay int8 in memory (a quarter of float32)
// and are widened to float32 in registers; activations stay float32, so unlike int8 activation
// quantization there is no error from outlier channels. Weight rows are split across threads;
// each 16-weight chunk is widened once and multiplied with up to four rows of x.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

namespace {

constexpr int64_t kRowsOfX = 4;

float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  return _mm_cvtss_f32(sum);
}

// out[j * out_stride] = dot(x[j], w) for j < rows (rows <= kRowsOfX).
void dot_rows(const float* x, int64_t rows, const int8_t* w, int64_t k, float scale, float* out,
              int64_t out_stride) {
  __m256 acc[kRowsOfX][2];
  for (int64_t j = 0; j < kRowsOfX; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m128i w16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i));
    __m256 w_lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w16));
    __m256 w_hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w16, 8)));
    for (int64_t j = 0; j < rows; ++j) {
      acc[j][0] = _mm256_fmadd_ps(w_lo, _mm256_loadu_ps(x + j * k + i), acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(w_hi, _mm256_loadu_ps(x + j * k + i + 8), acc[j][1]);
    }
  }
  for (int64_t j = 0; j < rows; ++j) {
    float total = horizontal_sum(_mm256_add_ps(acc[j][0], acc[j][1]));
    for (int64_t t = i; t < k; ++t) total += x[j * k + t] * static_cast<float>(w[t]);
    out[j * out_stride] = total * scale;
  }
}

}  // namespace

torch::Tensor int8_linear(torch::Tensor x, torch::Tensor weight, torch::Tensor scale) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "x must be float32 [M, K]");
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == torch::kInt8,
              "weight must be int8 [N, K]");
  TORCH_CHECK(scale.dim() == 1 && scale.scalar_type() == torch::kFloat32,
              "scale must be float32 [N]");
  TORCH_CHECK(x.size(1) == weight.size(1) && scale.size(0) == weight.size(0), "shape mismatch");
  x = x.contiguous();
  weight = weight.contiguous();
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  auto out = torch::empty({m, n}, x.options());
  const float* xp = x.data_ptr<float>();
  const int8_t* wp = weight.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t first = 0; first < m; first += kRowsOfX) {
        dot_rows(xp + first * k, std::min(kRowsOfX, m - first), wp + row * k, k, sp[row],
                 op + first * n + row, n);
      }
    }
  });
  return out;
}
