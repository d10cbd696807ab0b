// One decoder block's one-token decoding step as one call, its linear layers int8 weight-only.
//
// Eagerly, a block's step is about twenty PyTorch operators on tensors of a few hundred floats,
// and their dispatch, not their arithmetic, was nearly half of a SmolLM2 pair's decoding time on
// a CPU (256 greedy tokens for two rows: 4.1 s, 2.2 s with this). Here
// the norms, rotary embedding, cache write, attention and SwiGLU are plain loops between the
// four int8 matrix products (`int8_matmul`, compiled beside this file), in the same float32
// arithmetic as `modelcore.model.Block`: the results differ from it by rounding only.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float total = horizontal_sum(acc);
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// out = weight * (x / rms(x)), as `RMSNorm` orders it.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  float squares = 0;
  for (int64_t i = 0; i < n; ++i) squares += x[i] * x[i];
  const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(n) + static_cast<float>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inverse);
}

// Rotate-half RoPE of one head's vector, in place, as `apply_rope`.
void rope(float* x, const float* cos, const float* sin, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float first = x[i], second = x[i + half];
    x[i] = first * cos[i] - second * sin[i];
    x[i + half] = second * cos[i + half] + first * sin[i + half];
  }
}

// The heads of one row that share key-value head `g`: softmax(q k / sqrt(d)) v over the cache
// columns `valid` marks. Each cached key and value is read once for all of them.
void attend_group(const float* q, const float* keys, const float* values, const bool* valid,
                  int64_t columns, int64_t group, int64_t d, float* scores, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> peak(group, -std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < columns; ++s) {
    if (!valid[s]) continue;
    for (int64_t h = 0; h < group; ++h) {
      const float score = dot(q + h * d, keys + s * d, d) * scale;
      scores[h * columns + s] = score;
      peak[h] = std::max(peak[h], score);
    }
  }
  std::vector<float> total(group, 0.0f);
  std::fill(out, out + group * d, 0.0f);
  for (int64_t s = 0; s < columns; ++s) {
    if (!valid[s]) continue;
    const float* v = values + s * d;
    for (int64_t h = 0; h < group; ++h) {
      const float weight = std::exp(scores[h * columns + s] - peak[h]);
      total[h] += weight;
      float* o = out + h * d;
      for (int64_t i = 0; i < d; ++i) o[i] += weight * v[i];
    }
  }
  for (int64_t h = 0; h < group; ++h)
    for (int64_t i = 0; i < d; ++i) out[h * d + i] /= total[h];
}

void check_float(const torch::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.dim() == dim && t.scalar_type() == torch::kFloat32 && t.is_contiguous(), name,
              " must be a contiguous float32 tensor of ", dim, " dimensions");
}

}  // namespace

// x [B, 1, dim] -> the block's output [B, 1, dim]; this token's key and value are written to
// column `column` of the first B rows of the caches [rows, H_kv, columns, d]. cos and sin
// [B, 1, 1, d] are each row's rotary tables at its position, valid [B, 1, 1, columns] the
// columns each row attends (`Decoder.forward`'s one-token mask).
torch::Tensor int8_decode_block(torch::Tensor x, torch::Tensor cos, torch::Tensor sin,
                                torch::Tensor valid, int64_t column, torch::Tensor cache_k,
                                torch::Tensor cache_v, torch::Tensor attention_norm,
                                double attention_eps, torch::Tensor wqkv,
                                torch::Tensor wqkv_scale, torch::Tensor wo,
                                torch::Tensor wo_scale, torch::Tensor ffn_norm, double ffn_eps,
                                torch::Tensor w13, torch::Tensor w13_scale, torch::Tensor w2,
                                torch::Tensor w2_scale, int64_t n_heads) {
  check_float(x, 3, "x");
  check_float(cos, 4, "cos");
  check_float(sin, 4, "sin");
  check_float(cache_k, 4, "cache_k");
  check_float(cache_v, 4, "cache_v");
  const int64_t batch = x.size(0), dim = x.size(2);
  const int64_t kv_heads = cache_k.size(1), columns = cache_k.size(2), d = cache_k.size(3);
  TORCH_CHECK(x.size(1) == 1, "one token per row");
  TORCH_CHECK(cache_v.sizes() == cache_k.sizes() && cache_k.size(0) >= batch,
              "caches must be [rows >= B, H_kv, columns, head_dim]");
  TORCH_CHECK(n_heads * d == dim && n_heads % kv_heads == 0, "heads do not fit the width");
  TORCH_CHECK(cos.numel() == batch * d && sin.numel() == batch * d, "rotary tables [B, 1, 1, d]");
  TORCH_CHECK(valid.scalar_type() == torch::kBool && valid.is_contiguous() &&
                  valid.numel() == batch * columns,
              "valid must be a contiguous bool [B, 1, 1, columns]");
  TORCH_CHECK(0 <= column && column < columns, "column outside the cache");
  check_float(attention_norm, 1, "attention_norm");
  check_float(ffn_norm, 1, "ffn_norm");
  const int64_t kv_dim = kv_heads * d, qkv_dim = dim + 2 * kv_dim;
  check_int8_weight(wqkv, wqkv_scale, dim);
  check_int8_weight(wo, wo_scale, dim);
  check_int8_weight(w13, w13_scale, dim);
  const int64_t hidden = w13.size(0) / 2;
  check_int8_weight(w2, w2_scale, hidden);
  TORCH_CHECK(wqkv.size(0) == qkv_dim && wo.size(0) == dim && w2.size(0) == dim,
              "weights do not fit the width");

  auto out = x.clone();
  float* residual = out.data_ptr<float>();
  const float* cos_p = cos.data_ptr<float>();
  const float* sin_p = sin.data_ptr<float>();
  const bool* valid_p = valid.data_ptr<bool>();
  float* keys = cache_k.data_ptr<float>();
  float* values = cache_v.data_ptr<float>();
  std::vector<float> normed(batch * dim), qkv(batch * qkv_dim), attended(batch * dim),
      projected(batch * dim), gate_up(batch * 2 * hidden), activated(batch * hidden);

  for (int64_t b = 0; b < batch; ++b)
    rms_norm(residual + b * dim, attention_norm.data_ptr<float>(), dim, attention_eps,
             normed.data() + b * dim);
  int8_matmul(normed.data(), batch, dim, wqkv.data_ptr<int8_t>(), wqkv_scale.data_ptr<float>(),
              qkv_dim, qkv.data());
  // Rotate q and k, and write k and v to the cache, before any row attends.
  for (int64_t b = 0; b < batch; ++b) {
    float* row = qkv.data() + b * qkv_dim;
    for (int64_t h = 0; h < n_heads + kv_heads; ++h) rope(row + h * d, cos_p + b * d, sin_p + b * d, d);
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t slot = ((b * kv_heads + g) * columns + column) * d;
      std::copy_n(row + dim + g * d, d, keys + slot);
      std::copy_n(row + dim + kv_dim + g * d, d, values + slot);
    }
  }
  const int64_t group = n_heads / kv_heads;
  at::parallel_for(0, batch * kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(group * columns);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / kv_heads, g = task % kv_heads;
      const int64_t cache = (b * kv_heads + g) * columns * d;
      attend_group(qkv.data() + b * qkv_dim + g * group * d, keys + cache, values + cache,
                   valid_p + b * columns, columns, group, d, scores.data(),
                   attended.data() + b * dim + g * group * d);
    }
  });
  int8_matmul(attended.data(), batch, dim, wo.data_ptr<int8_t>(), wo_scale.data_ptr<float>(),
              dim, projected.data());
  for (int64_t i = 0; i < batch * dim; ++i) residual[i] += projected[i];

  for (int64_t b = 0; b < batch; ++b)
    rms_norm(residual + b * dim, ffn_norm.data_ptr<float>(), dim, ffn_eps,
             normed.data() + b * dim);
  int8_matmul(normed.data(), batch, dim, w13.data_ptr<int8_t>(), w13_scale.data_ptr<float>(),
              2 * hidden, gate_up.data());
  for (int64_t b = 0; b < batch; ++b) {
    const float* gate = gate_up.data() + b * 2 * hidden;
    const float* up = gate + hidden;
    for (int64_t i = 0; i < hidden; ++i)
      activated[b * hidden + i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
  int8_matmul(activated.data(), batch, hidden, w2.data_ptr<int8_t>(), w2_scale.data_ptr<float>(),
              dim, projected.data());
  for (int64_t i = 0; i < batch * dim; ++i) residual[i] += projected[i];
  return out;
}
