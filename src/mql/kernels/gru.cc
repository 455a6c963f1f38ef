// MQL's context GRU as native CPU kernels for XLA's FFI (see mql/kernels/__init__.py).
//
// One call runs a whole GRU pass over H steps: XLA's CPU backend runs every step of the
// recurrence as several small kernels (a (B x n)·(n x 3n) matmul and fused elementwise work),
// whose launch cost dominates the arithmetic at these sizes (B = 256, n = 20).
//
// Equations (PyTorch's GRU, as mql.offpolicy.networks.ContextGRU):
//   [hr, hu, hn] = h W_h + b_h;  r = σ(x_r + hr);  u = σ(x_u + hu);  c = tanh(x_n + r ⊙ hn)
//   h' = (1 - u) ⊙ c + u ⊙ h
// where x = history W_in + b_in is computed by XLA before the call (one matmul over all steps).
//
// Layout: XLA's arrays keep their natural batch-major layout, so the matmuls around the calls
// (the input projection, the weight gradients) stay plain matmuls. Inside, samples are
// processed in blocks of S (the SIMD width): each block's rows are transposed on the fly so
// that one vector holds one unit of S samples.
//   xs      (B, H, 3n)   input projections, one row per sample and step
//   w_h     (n, 3n)      recurrent weights, b_h (3n)
//   h_out   (B, n)       final hidden state
//   hprev   (B, H, n)    h_{t-1} per step                      (forward with residuals)
//   gates   (ceil(B/S), H, 4, n, S)   r, u, c, hn in the kernels' own block layout
//   g       (B, n)       cotangent of h_out                    (backward, with hprev, gates)
//   d_x     (B, H, 3n)   cotangent of xs; d_hp (B, H, 3n) cotangent of h W_h + b_h
// Sigmoid and tanh use the same rational approximation of tanh as Eigen (and so XLA's CPU
// backend), with σ(x) = (1 + tanh(x / 2)) / 2; results agree with the XLA path to ~1e-6.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int64_t S = 16;
#elif defined(__AVX__)
constexpr int64_t S = 8;
#else
constexpr int64_t S = 4;
#endif
constexpr int64_t kMaxHidden = 256;

typedef float vf __attribute__((vector_size(4 * S), aligned(4)));

inline vf splat(float a) { return vf{} + a; }

inline vf vtanh(vf x) {
  const vf c = splat(7.90531110763549805f);
  x = x < -c ? -c : x;
  x = x > c ? c : x;
  const vf x2 = x * x;
  vf p = splat(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  vf q = splat(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

inline vf vsigmoid(vf x) { return 0.5f * vtanh(0.5f * x) + 0.5f; }

// out[j] = bias[j] + sum_k in[k] * w[k * ldw + j * jstride], j < m, for one block of S samples.
// Eight independent accumulators keep the FMA pipeline full (one accumulator is latency-bound).
inline void block_matvec(const vf* in, int64_t kn, const float* w, int64_t ldw, int64_t jstride,
                         const float* bias, int64_t m, vf* out) {
  int64_t j = 0;
  for (; j + 8 <= m; j += 8) {
    vf a[8];
    for (int q = 0; q < 8; ++q) a[q] = splat(bias ? bias[j + q] : 0.f);
    for (int64_t k = 0; k < kn; ++k) {
      const float* wk = w + k * ldw + j * jstride;
      const vf v = in[k];
      for (int q = 0; q < 8; ++q) a[q] += wk[q * jstride] * v;
    }
    for (int q = 0; q < 8; ++q) out[j + q] = a[q];
  }
  for (; j < m; ++j) {
    vf a = splat(bias ? bias[j] : 0.f);
    for (int64_t k = 0; k < kn; ++k) a += w[k * ldw + j * jstride] * in[k];
    out[j] = a;
  }
}

struct Shape {
  int64_t B, H, n;
};

// Rows [b0, b0 + S) of a (B, H, m) array at step t, transposed into m vectors (zero padding
// past B), and back. With AVX-512, 16 x 16 tiles are transposed in registers (64 shuffles per
// tile instead of 256 scalar loads and stores); otherwise element by element.
#if defined(__AVX512F__)
// In-place transpose of 16 rows of 16 floats: r[i][j] -> r[j][i].
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

inline __mmask16 first(int64_t k) { return static_cast<__mmask16>((1u << k) - 1u); }

inline void gather_block(const float* a, const Shape& s, int64_t m, int64_t b0, int64_t t,
                         float* out) {
  const int64_t sn = std::min(S, s.B - b0);
  for (int64_t j0 = 0; j0 < m; j0 += 16) {
    const int64_t w = std::min<int64_t>(16, m - j0);
    __m512 r[16];
    for (int64_t q = 0; q < 16; ++q)
      r[q] = q < sn ? _mm512_maskz_loadu_ps(first(w), a + ((b0 + q) * s.H + t) * m + j0)
                    : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t j = 0; j < w; ++j) _mm512_storeu_ps(out + (j0 + j) * S, r[j]);
  }
}

inline void scatter_block(const vf* v, const Shape& s, int64_t m, int64_t b0, int64_t t,
                          float* a) {
  const int64_t sn = std::min(S, s.B - b0);
  const float* in = reinterpret_cast<const float*>(v);
  for (int64_t j0 = 0; j0 < m; j0 += 16) {
    const int64_t w = std::min<int64_t>(16, m - j0);
    __m512 r[16];
    for (int64_t j = 0; j < 16; ++j)
      r[j] = j < w ? _mm512_loadu_ps(in + (j0 + j) * S) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t q = 0; q < sn; ++q)
      _mm512_mask_storeu_ps(a + ((b0 + q) * s.H + t) * m + j0, first(w), r[q]);
  }
}
#else
inline void gather_block(const float* a, const Shape& s, int64_t m, int64_t b0, int64_t t,
                         float* out) {
  const int64_t sn = std::min(S, s.B - b0);
  for (int64_t q = sn; q < S; ++q)
    for (int64_t j = 0; j < m; ++j) out[j * S + q] = 0.f;
  for (int64_t q = 0; q < sn; ++q) {
    const float* row = a + ((b0 + q) * s.H + t) * m;
    for (int64_t j = 0; j < m; ++j) out[j * S + q] = row[j];
  }
}

inline void scatter_block(const vf* v, const Shape& s, int64_t m, int64_t b0, int64_t t,
                          float* a) {
  const int64_t sn = std::min(S, s.B - b0);
  for (int64_t q = 0; q < sn; ++q) {
    float* row = a + ((b0 + q) * s.H + t) * m;
    for (int64_t j = 0; j < m; ++j) row[j] = v[j][q];
  }
}
#endif

ffi::Error check(ffi::Buffer<ffi::F32>& xs, ffi::Buffer<ffi::F32>& w_h, Shape* s) {
  auto d = xs.dimensions();
  auto w = w_h.dimensions();
  if (d.size() != 3 || w.size() != 2 || d[2] != w[1] || w[1] != 3 * w[0])
    return ffi::Error::InvalidArgument("mql gru: expected xs (B, H, 3n) and w_h (n, 3n)");
  if (w[0] > kMaxHidden) return ffi::Error::InvalidArgument("mql gru: hidden size above 256");
  *s = Shape{d[0], d[1], w[0]};
  return ffi::Error::Success();
}

// Runs fn(block) for blocks [0, count) on the calling thread and, when XLA's intra-op pool
// has a free thread, on one helper too: both take blocks from one atomic counter, so the
// caller never waits for a helper that has not started (no deadlock when the pool is busy),
// only for blocks in progress. A late helper finds no block left and returns; it shares only
// `State` (kept alive by the shared_ptr), never the caller's buffers.
template <typename F>
void parallel_blocks(ffi::ThreadPool& pool, int64_t count, F fn) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto st = std::make_shared<State>();
  auto work = [st, count, fn]() {
    for (int64_t i; (i = st->next.fetch_add(1, std::memory_order_relaxed)) < count;) {
      fn(i);
      st->done.fetch_add(1, std::memory_order_release);
    }
  };
  if (count > 1 && pool.num_threads() > 1) pool.Schedule(decltype(work)(work));
  work();
  while (st->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
}

// The forward pass of the block of samples [b0, b0 + S); `hprev` and `gates` may be null
// (no residuals kept).
void forward_block(const float* xs, const float* w_h, const float* b_h, const Shape& s,
                   int64_t b0, float* h_out, float* hprev, float* gates) {
  const int64_t H = s.H, n = s.n, G = 3 * n;
  vf h[kMaxHidden], hp[3 * kMaxHidden], x[3 * kMaxHidden];
  for (int64_t k = 0; k < n; ++k) h[k] = vf{};
  for (int64_t t = 0; t < H; ++t) {
    gather_block(xs, s, G, b0, t, reinterpret_cast<float*>(x));
    if (hprev) scatter_block(h, s, n, b0, t, hprev);
    block_matvec(h, n, w_h, G, 1, b_h, G, hp);
    vf* sv = gates ? reinterpret_cast<vf*>(gates) + ((b0 / S) * H + t) * 4 * n : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      const vf r = vsigmoid(x[j] + hp[j]);
      const vf u = vsigmoid(x[n + j] + hp[n + j]);
      const vf c = vtanh(x[2 * n + j] + r * hp[2 * n + j]);
      if (sv) {
        sv[j] = r;
        sv[n + j] = u;
        sv[2 * n + j] = c;
        sv[3 * n + j] = hp[2 * n + j];
      }
      h[j] = (1.f - u) * c + u * h[j];
    }
  }
  const Shape last{s.B, 1, n};  // h_out is (B, n): one "step"
  scatter_block(h, last, n, b0, 0, h_out);
}

void forward(ffi::ThreadPool& pool, const float* xs, const float* w_h, const float* b_h,
             const Shape& s, float* h_out, float* hprev, float* gates) {
  parallel_blocks(pool, (s.B + S - 1) / S, [=](int64_t i) {
    forward_block(xs, w_h, b_h, s, i * S, h_out, hprev, gates);
  });
}

// The backward recurrence of one block: dh_{t-1} = dh_t ⊙ u_t + d_hp_t W_hᵀ, t = H - 1 .. 0.
void backward_block(const float* g, const float* hprev, const float* gates, const float* w_h,
                    const Shape& s, int64_t b0, float* d_x, float* d_hp) {
  const int64_t H = s.H, n = s.n, G = 3 * n;
  vf dh[kMaxHidden], h[kMaxHidden], dx[3 * kMaxHidden], dhp[3 * kMaxHidden], back[kMaxHidden];
  const Shape last{s.B, 1, n};  // g is (B, n): one "step"
  gather_block(g, last, n, b0, 0, reinterpret_cast<float*>(dh));
  for (int64_t t = H - 1; t >= 0; --t) {
    gather_block(hprev, s, n, b0, t, reinterpret_cast<float*>(h));
    const vf* sv = reinterpret_cast<const vf*>(gates) + ((b0 / S) * H + t) * 4 * n;
    for (int64_t j = 0; j < n; ++j) {
      const vf r = sv[j], u = sv[n + j], c = sv[2 * n + j], hn = sv[3 * n + j];
      const vf a_n = dh[j] * (1.f - u) * (1.f - c * c);  // through c = tanh(x_n + r hn)
      const vf a_r = a_n * hn * r * (1.f - r);           // through r = σ(.)
      const vf a_u = dh[j] * (h[j] - c) * u * (1.f - u);  // h' = c + u (h - c), u = σ(.)
      dx[j] = dhp[j] = a_r;
      dx[n + j] = dhp[n + j] = a_u;
      dx[2 * n + j] = a_n;
      dhp[2 * n + j] = a_n * r;
      dh[j] = dh[j] * u;
    }
    scatter_block(dx, s, G, b0, t, d_x);
    scatter_block(dhp, s, G, b0, t, d_hp);
    // back[k] = sum_j dhp[j] W_h[k, j]: W_h read transposed (row stride 1, column stride G).
    block_matvec(dhp, G, w_h, 1, G, nullptr, n, back);
    for (int64_t k = 0; k < n; ++k) dh[k] += back[k];
  }
}

void backward(ffi::ThreadPool& pool, const float* g, const float* hprev, const float* gates,
              const float* w_h, const Shape& s, float* d_x, float* d_hp) {
  parallel_blocks(pool, (s.B + S - 1) / S, [=](int64_t i) {
    backward_block(g, hprev, gates, w_h, s, i * S, d_x, d_hp);
  });
}

// Rows of the block-layout residuals: ceil(B / S) blocks of S samples, H steps, 4 gates, n units.
int64_t gates_size(const Shape& s) { return (s.B + S - 1) / S * S * s.H * 4 * s.n; }

ffi::Error GruForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xs,
                          ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> b_h,
                          ffi::ResultBuffer<ffi::F32> h_out) {
  Shape s;
  if (auto e = check(xs, w_h, &s); e.failure()) return e;
  forward(pool, xs.typed_data(), w_h.typed_data(), b_h.typed_data(), s, h_out->typed_data(),
          nullptr, nullptr);
  return ffi::Error::Success();
}

ffi::Error GruForwardSavedImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xs,
                               ffi::Buffer<ffi::F32> w_h, ffi::Buffer<ffi::F32> b_h,
                               ffi::ResultBuffer<ffi::F32> h_out,
                               ffi::ResultBuffer<ffi::F32> hprev,
                               ffi::ResultBuffer<ffi::F32> gates) {
  Shape s;
  if (auto e = check(xs, w_h, &s); e.failure()) return e;
  if (gates->element_count() != gates_size(s))
    return ffi::Error::InvalidArgument("mql gru: gates buffer of the wrong size");
  forward(pool, xs.typed_data(), w_h.typed_data(), b_h.typed_data(), s, h_out->typed_data(),
          hprev->typed_data(), gates->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> g,
                           ffi::Buffer<ffi::F32> hprev, ffi::Buffer<ffi::F32> gates,
                           ffi::Buffer<ffi::F32> w_h, ffi::ResultBuffer<ffi::F32> d_x,
                           ffi::ResultBuffer<ffi::F32> d_hp) {
  auto d = d_x->dimensions();
  auto w = w_h.dimensions();
  if (d.size() != 3 || w.size() != 2 || d[2] != w[1] || w[0] > kMaxHidden)
    return ffi::Error::InvalidArgument("mql gru backward: unexpected shapes");
  const Shape s{d[0], d[1], w[0]};
  if (gates.element_count() != gates_size(s) || hprev.element_count() != s.B * s.H * s.n)
    return ffi::Error::InvalidArgument("mql gru backward: residuals of the wrong size");
  backward(pool, g.typed_data(), hprev.typed_data(), gates.typed_data(), w_h.typed_data(), s,
           d_x->typed_data(), d_hp->typed_data());
  return ffi::Error::Success();
}

}  // namespace

extern "C" int64_t MqlGruLanes() { return S; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(MqlGruForward, GruForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MqlGruForwardSaved, GruForwardSavedImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MqlGruBackward, GruBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
