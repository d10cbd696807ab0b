// Weight-only int8 linear for CPU decoding: y[m, n] = scale[n] * sum_k x[m, k] * w[n, k].
//
// Decoding is bound by reading the weights, so they stay int8 in memory (a quarter of float32)
// and are widened to float32 in registers; activations stay float32, so unlike int8 activation
// quantization there is no error from outlier channels. Weight rows are split across threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

namespace {

float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  return _mm_cvtss_f32(sum);
}

// out[j * out_stride] = scale * dot(x[j], w) for the R rows of x at x + j * k.
//
// R and A are compile-time constants so that the accumulators stay in registers (a run-time
// index would put them on the stack, and every FMA would wait on a store and a load). Each row
// of x has A independent accumulators of 8 lanes, so A * R FMA chains run at once and hide the
// FMA latency; a one-row call (batch-1 decoding) needs A = 4 to keep both FMA ports busy.
template <int R, int A>
void dot_rows(const float* x, const int8_t* w, int64_t k, float scale, float* out,
              int64_t out_stride) {
  __m256 acc[R][A];
  for (int j = 0; j < R; ++j)
    for (int a = 0; a < A; ++a) acc[j][a] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * A <= k; i += 8 * A) {
    for (int a = 0; a < A; ++a) {
      // 8 weights loaded as 8 bytes and widened straight to int32, then to float.
      __m128i w8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + i + 8 * a));
      __m256 wf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w8));
      for (int j = 0; j < R; ++j)
        acc[j][a] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + j * k + i + 8 * a), acc[j][a]);
    }
  }
  for (int j = 0; j < R; ++j) {
    __m256 sum = acc[j][0];
    for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[j][a]);
    float total = horizontal_sum(sum);
    for (int64_t t = i; t < k; ++t) total += x[j * k + t] * static_cast<float>(w[t]);
    out[j * out_stride] = total * scale;
  }
}

// Up to four rows of x against one weight row, each weight widened once for all of them.
void dot_up_to_4_rows(const float* x, int64_t rows, const int8_t* w, int64_t k, float scale,
                      float* out, int64_t out_stride) {
  switch (rows) {
    case 1: return dot_rows<1, 4>(x, w, k, scale, out, out_stride);
    case 2: return dot_rows<2, 2>(x, w, k, scale, out, out_stride);
    case 3: return dot_rows<3, 2>(x, w, k, scale, out, out_stride);
    default: return dot_rows<4, 2>(x, w, k, scale, out, out_stride);
  }
}

// How many weight rows ahead of the one being multiplied its thread asks the cache for. Rows
// are 576 to 1536 bytes in SmolLM2; 4 to 16 rows ahead were alike (8: 5.6 ms a token for one
// row of x, 7.3 for two; 2 rows ahead: 6.2 and 7.9).
constexpr int64_t kPrefetchRows = 8;

// out [m, n] = x [m, k] @ (w [n, k] * scale [n]).T, weight rows split across threads.
void int8_matmul(const float* x, int64_t m, int64_t k, const int8_t* w, const float* scale,
                 int64_t n, float* out) {
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      // The hardware prefetcher alone left the weights' stream at half the memory bandwidth
      // (SmolLM2's 30 blocks and head in int8, one row of x: 10.6 ms a token, 5.6 with this).
      if (row + kPrefetchRows < end) {
        const char* ahead = reinterpret_cast<const char*>(w + (row + kPrefetchRows) * k);
        for (int64_t line = 0; line < k; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
      }
      for (int64_t first = 0; first < m; first += 4) {
        dot_up_to_4_rows(x + first * k, std::min<int64_t>(4, m - first), w + row * k, k,
                         scale[row], out + first * n + row, n);
      }
    }
  });
}

void check_int8_weight(const torch::Tensor& weight, const torch::Tensor& scale, int64_t k) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == torch::kInt8 && weight.is_contiguous(),
              "weight must be contiguous int8 [N, K]");
  TORCH_CHECK(scale.dim() == 1 && scale.scalar_type() == torch::kFloat32 && scale.is_contiguous(),
              "scale must be contiguous float32 [N]");
  TORCH_CHECK(weight.size(1) == k && scale.size(0) == weight.size(0), "shape mismatch");
}

}  // namespace

torch::Tensor int8_linear(torch::Tensor x, torch::Tensor weight, torch::Tensor scale) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "x must be float32 [M, K]");
  x = x.contiguous();
  weight = weight.contiguous();
  scale = scale.contiguous();
  check_int8_weight(weight, scale, x.size(1));
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  auto out = torch::empty({m, n}, x.options());
  int8_matmul(x.data_ptr<float>(), m, k, weight.data_ptr<int8_t>(), scale.data_ptr<float>(), n,
              out.data_ptr<float>());
  return out;
}
