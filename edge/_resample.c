/*
 * Antialiased bilinear resize of 8-bit, 3-channel images, bit-exact with Pillow's
 * Image.resize(size, Image.BILINEAR) of the cropped window.
 *
 * Why C: reference models (and most Coral / Teachable Machine exports) were evaluated with
 * Pillow's antialiased bilinear filter, and a quantized model's scores move by several
 * hundredths when a fraction of the pixels differ by one level. Pillow itself takes ~1.4 ms for
 * a 480x480 -> 224x224 resize, close to a whole MobileNet invoke, so the device path needs the
 * same arithmetic (same coefficients, same fixed point, same pass order) without the overhead.
 * edge/resample.py falls back to Pillow when this module is not built.
 *
 * resize(src, y0, y1, x0, x1, dst[, swap[, generic]]): src is a C-contiguous (H, W, 3) uint8
 * buffer; the window [y0:y1, x0:x1] is resized into the C-contiguous (h, w, 3) uint8 buffer dst,
 * with the channel order reversed when `swap` (BGR frame -> RGB model, at no cost on the SIMD
 * path). The GIL is released while computing. On CPUs with AVX-512 VBMI and VNNI the horizontal
 * pass gathers bytes with permutes straight from the interleaved rows (no transposes);
 * `generic` forces the portable path, which tests compare against it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static inline uint8_t clip8(int32_t in) {
    int32_t v = in >> PRECISION_BITS;
    return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

/* Same coefficients as Pillow's precompute_coeffs + normalize_coeffs_8bpc (bilinear filter). */
static int precompute(int in_size, int out_size, int **bounds_out, int32_t **kk_out, int *ksize_out) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * out_size);
    int32_t *kk = malloc(sizeof(int32_t) * ksize * out_size);
    double *k = malloc(sizeof(double) * ksize);
    if (!bounds || !kk || !k) {
        free(bounds); free(kk); free(k);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double t = fabs((x + xmin - center + 0.5) * ss);
            double w = t < 1.0 ? 1.0 - t : 0.0;
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
            kk[xx * ksize + x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                                       : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds; *kk_out = kk; *ksize_out = ksize;
    return 0;
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define VECTORIZE __attribute__((target_clones("arch=x86-64-v4", "avx2", "sse4.1", "default")))
#else
#define VECTORIZE
#endif

/* One 1-D pass along rows: out row i = clip8(sum_y k[i][y] * in row (bounds[i] + y)).
 * Rows are `width` contiguous bytes, so the inner loop is plain SIMD; the horizontal pass is
 * run through here on a transposed image for the same reason. */
VECTORIZE
static void pass_rows(const uint8_t *in, Py_ssize_t in_stride, int first_row, uint8_t *out, Py_ssize_t out_stride,
                      int n_out, int width, const int *bounds, const int32_t *kk, int ksize, int32_t *acc) {
    for (int i = 0; i < n_out; i++) {
        const int32_t *k = kk + i * ksize;
        int first = bounds[2 * i] - first_row, n = bounds[2 * i + 1];
        for (int t = 0; t < width; t++) acc[t] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *r = in + (Py_ssize_t)(first + y) * in_stride;
            int32_t w = k[y];
            for (int t = 0; t < width; t++) acc[t] += r[t] * w;
        }
        uint8_t *o = out + (Py_ssize_t)i * out_stride;
        for (int t = 0; t < width; t++) o[t] = clip8(acc[t]);
    }
}

/* Transpose an (h, w) grid of 3-byte pixels into (w, h), in cache-sized tiles. Pixels move as
 * 4-byte words (the 4th byte is the next pixel's, rewritten by the next store in the same
 * output row); the last pixel of each output row and of the input are copied bytewise so
 * nothing outside the rows is read or written. */
static void transpose3(const uint8_t *in, Py_ssize_t in_stride, int h, int w, uint8_t *out, Py_ssize_t out_stride) {
    enum { TILE = 16 };
    for (int y0 = 0; y0 < h; y0 += TILE) {
        int y1 = y0 + TILE < h ? y0 + TILE : h;
        int yw = y1 < h ? y1 : h - 1; /* rows below yw may use word stores */
        for (int x0 = 0; x0 < w; x0 += TILE) {
            int x1 = x0 + TILE < w ? x0 + TILE : w;
            for (int y = y0; y < y1; y++) {
                const uint8_t *p = in + (Py_ssize_t)y * in_stride + x0 * 3;
                uint8_t *o = out + (Py_ssize_t)x0 * out_stride + y * 3;
                int xw = (y == h - 1) ? x1 - 1 : x1; /* the very last input pixel: no 4-byte read */
                if (y < yw) {
                    int x = x0;
                    for (; x < xw; x++, p += 3, o += out_stride) {
                        uint32_t v;
                        memcpy(&v, p, 4);
                        memcpy(o, &v, 4);
                    }
                    for (; x < x1; x++, p += 3, o += out_stride) {
                        o[0] = p[0]; o[1] = p[1]; o[2] = p[2];
                    }
                } else {
                    for (int x = x0; x < x1; x++, p += 3, o += out_stride) {
                        o[0] = p[0]; o[1] = p[1]; o[2] = p[2];
                    }
                }
            }
        }
    }
}

/* Per-thread scratch memory, grown as needed and kept: fresh multi-megabyte mallocs are mmap'd
 * and page-faulted on every frame, which costs as much as the arithmetic. */
static __thread uint8_t *scratch;
static __thread size_t scratch_size;

static uint8_t *scratch_get(size_t size) {
    if (size > scratch_size) {
        uint8_t *p = realloc(scratch, size);
        if (!p) return NULL;
        scratch = p;
        scratch_size = size;
    }
    return scratch;
}

/* The coefficients of both axes for one (window, output) geometry. A camera sends the same
 * geometry frame after frame, so the last one is kept per thread. */
typedef struct {
    int wy, wx, oh, ow;
    int *xb, *yb, xks, yks;
    int32_t *xk, *yk;
    /* SIMD horizontal plan (x86-64 with AVX-512 VBMI + VNNI): output pixels in blocks of <= 16
     * whose input span fits 128 bytes. A 32-bit lane holds one output value (48 values = 16 RGB
     * pixels = 3 vectors) and four of its taps: per block, group of 4 taps and third, one
     * byte-gather index vector and the coefficients as three signed-byte digit vectors
     * (k = d2 * 2^16 + d1 * 2^8 + d0), so u8 x s8 dot products give Pillow's int32 sums exactly. */
    int nblocks, swap;
    int *blk; /* per block: first output pixel, pixel count, first input pixel, tap groups, vector offset */
    uint8_t *vec; /* per (block, group, third): index vector, then digit vectors d0, d1, d2 */
    void *vmem;
} Plan;

static void plan_free(Plan *p) {
    free(p->xb); free(p->yb); free(p->xk); free(p->yk); free(p->blk); free(p->vmem);
    memset(p, 0, sizeof(*p));
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HAVE_VBMI_PATH 1
#include <immintrin.h>
#endif

static int use_simd; /* probed once at import: 0 generic path, 1 AVX-512 VBMI + VNNI path */

static int simd_supported(void) {
#ifdef HAVE_VBMI_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* Signed base-256 digits of a coefficient: k = d2 * 65536 + d1 * 256 + d0, each in [-128, 127]. */
static void digits(int32_t k, int8_t d[3]) {
    for (int i = 0; i < 3; i++) {
        int32_t lo = ((k + 128) & 255) - 128;
        d[i] = (int8_t)lo;
        k = (k - lo) / 256;
    }
}

static int plan_simd(Plan *p) {
    int ow = p->ow, ks = p->xks, nb = 0, nvec = 0;
    int *blk = malloc(sizeof(int) * 5 * ow);
    if (!blk) return -1;
    for (int x = 0; x < ow;) {
        int base = p->xb[2 * x], count = 0, taps = 0;
        while (count < 16 && x + count < ow) {
            int xx = x + count, end = p->xb[2 * xx] + p->xb[2 * xx + 1] - base;
            if (end * 3 > 128) break;
            if (p->xb[2 * xx + 1] > taps) taps = p->xb[2 * xx + 1];
            count++;
        }
        if (count == 0) { /* one pixel's support is wider than 42 pixels: no SIMD plan */
            free(blk);
            return 1;
        }
        int *b = blk + 5 * nb++, groups = (taps + 3) / 4;
        b[0] = x; b[1] = count; b[2] = base; b[3] = groups; b[4] = nvec;
        nvec += 3 * 4 * groups;
        x += count;
    }
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (size_t)nvec * 64 + 64)) {
        free(blk);
        return -1;
    }
    uint8_t *vec = mem;
    memset(mem, 0, (size_t)nvec * 64);
    for (int i = 0; i < nb; i++) {
        int *b = blk + 5 * i;
        for (int g = 0; g < b[3]; g++) {
            for (int q = 0; q < 3; q++) {
                uint8_t *v = vec + ((size_t)b[4] + 4 * (3 * g + q)) * 64;
                for (int lane = 0; lane < 16; lane++) {
                    int slot = q * 16 + lane, px = slot / 3, c = slot % 3, x = b[0] + px;
                    if (px >= b[1]) continue;
                    if (p->swap) c = 2 - c;
                    for (int t = 0; t < 4; t++) {
                        int j = 4 * g + t;
                        if (j >= p->xb[2 * x + 1]) break;
                        int8_t d[3];
                        digits(p->xk[x * ks + j], d);
                        v[4 * lane + t] = (uint8_t)((p->xb[2 * x] + j - b[2]) * 3 + c);
                        for (int r = 0; r < 3; r++) v[64 * (r + 1) + 4 * lane + t] = (uint8_t)d[r];
                    }
                }
            }
        }
    }
    p->nblocks = nb; p->blk = blk; p->vec = vec; p->vmem = mem;
    return 0;
}

static __thread Plan cached;

static Plan *plan_get(int wy, int wx, int oh, int ow, int swap) {
    Plan *p = &cached;
    if (p->xb && p->wy == wy && p->wx == wx && p->oh == oh && p->ow == ow && p->swap == swap) return p;
    plan_free(p);
    p->wy = wy; p->wx = wx; p->oh = oh; p->ow = ow; p->swap = swap;
    if (precompute(wx, ow, &p->xb, &p->xk, &p->xks) || precompute(wy, oh, &p->yb, &p->yk, &p->yks)) {
        plan_free(p);
        return NULL;
    }
    if (use_simd && p->yks <= 16 && plan_simd(p) < 0) {
        plan_free(p);
        return NULL;
    }
    return p;
}

#ifdef HAVE_VBMI_PATH
#define VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni")))

/* clip8 of non-negative sums (bilinear weights are >= 0): > 255 -> 255 by unsigned saturation. */
static inline VBMI __m128i pack_bytes(__m512i acc) {
    return _mm512_cvtusepi32_epi8(_mm512_srli_epi32(acc, PRECISION_BITS));
}

/* Pillow's int32 sum from the three digit accumulators: acc0 + acc1 * 2^8 + acc2 * 2^16. */
static inline VBMI __m512i undigit(__m512i a0, __m512i a1, __m512i a2) {
    return _mm512_add_epi32(a0, _mm512_add_epi32(_mm512_slli_epi32(a1, 8), _mm512_slli_epi32(a2, 16)));
}

static inline VBMI __mmask64 first_bytes(Py_ssize_t n) {
    return n >= 64 ? ~(__mmask64)0 : (n <= 0 ? 0 : (((__mmask64)1 << n) - 1));
}

/* Horizontal pass of one RGB row straight from the interleaved pixels: per block of output
 * pixels, the block's input span is loaded into two registers once; per group of 4 taps, one
 * permute gathers the 4 input bytes of each of 16 output values and three dot products add
 * them times the coefficient digits. */
static VBMI void hpass_row_vbmi(const Plan *p, const uint8_t *row, uint8_t *out) {
    for (int i = 0; i < p->nblocks; i++) {
        const int *b = p->blk + 5 * i;
        const uint8_t *src = row + (Py_ssize_t)b[2] * 3;
        Py_ssize_t avail = (Py_ssize_t)(p->wx - b[2]) * 3;
        __m512i lo = _mm512_maskz_loadu_epi8(first_bytes(avail), src);
        __m512i hi = _mm512_maskz_loadu_epi8(first_bytes(avail - 64), src + 64);
        __m512i z = _mm512_setzero_si512(), h = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
        __m512i acc[3][3] = {{h, z, z}, {h, z, z}, {h, z, z}};
        const __m512i *v = (const __m512i *)p->vec + b[4];
        for (int g = 0; g < b[3]; g++) {
            for (int q = 0; q < 3; q++, v += 4) {
                __m512i px = _mm512_permutex2var_epi8(lo, v[0], hi);
                acc[q][0] = _mm512_dpbusd_epi32(acc[q][0], px, v[1]);
                acc[q][1] = _mm512_dpbusd_epi32(acc[q][1], px, v[2]);
                acc[q][2] = _mm512_dpbusd_epi32(acc[q][2], px, v[3]);
            }
        }
        uint8_t *o = out + (Py_ssize_t)b[0] * 3;
        Py_ssize_t n = (Py_ssize_t)b[1] * 3;
        for (int q = 0; q < 3; q++) {
            __m512i sum = undigit(acc[q][0], acc[q][1], acc[q][2]);
            _mm_mask_storeu_epi8(o + 16 * q, (__mmask16)first_bytes(n - 16 * q), pack_bytes(sum));
        }
    }
}

/* Four taps' coefficient digits packed as the byte quadruples vpdpbusd multiplies with. */
static void tap_digits(const int32_t *k, int n, int32_t out[3]) {
    uint32_t q[3] = {0, 0, 0};
    for (int t = 0; t < 4 && t < n; t++) {
        int8_t d[3];
        digits(k[t], d);
        for (int r = 0; r < 3; r++) q[r] |= (uint32_t)(uint8_t)d[r] << (8 * t);
    }
    for (int r = 0; r < 3; r++) out[r] = (int32_t)q[r];
}

/* Vertical pass, 64 output bytes at a time: four input rows are interleaved byte by byte so
 * that each 32-bit lane holds one column's 4 taps, which three dot products with the
 * coefficient digits sum exactly (as in the horizontal pass). Two unsigned-saturating packs
 * restore the column order, because the interleave and the packs both work per 128-bit lane. */
static VBMI void vpass_vbmi(const uint8_t *in, Py_ssize_t stride, int first_row, uint8_t *dst, int oh, int width,
                            const int *bounds, const int32_t *kk, int ksize) {
    for (int i = 0; i < oh; i++) {
        const int32_t *k = kk + i * ksize;
        const uint8_t *r0 = in + (Py_ssize_t)(bounds[2 * i] - first_row) * stride;
        int n = bounds[2 * i + 1], groups = (n + 3) / 4;
        int32_t dig[4][3]; /* up to 16 taps per row on this path (plan_simd's 128-byte limit is wider) */
        const uint8_t *rows[16];
        for (int g = 0; g < groups; g++) tap_digits(k + 4 * g, n - 4 * g, dig[g]);
        for (int y = 0; y < 4 * groups; y++) rows[y] = r0 + (Py_ssize_t)(y < n ? y : 0) * stride; /* weight 0 */
        uint8_t *o = dst + (Py_ssize_t)i * width;
        for (int t = 0; t < width; t += 64) {
            __mmask64 m = first_bytes(width - t);
            __m512i z = _mm512_setzero_si512(), h = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
            __m512i acc[4][3] = {{h, z, z}, {h, z, z}, {h, z, z}, {h, z, z}};
            for (int g = 0; g < groups; g++) {
                __m512i a = _mm512_maskz_loadu_epi8(m, rows[4 * g] + t), b = _mm512_maskz_loadu_epi8(m, rows[4 * g + 1] + t);
                __m512i c = _mm512_maskz_loadu_epi8(m, rows[4 * g + 2] + t), d = _mm512_maskz_loadu_epi8(m, rows[4 * g + 3] + t);
                __m512i ab_lo = _mm512_unpacklo_epi8(a, b), ab_hi = _mm512_unpackhi_epi8(a, b);
                __m512i cd_lo = _mm512_unpacklo_epi8(c, d), cd_hi = _mm512_unpackhi_epi8(c, d);
                __m512i col[4] = {_mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_unpackhi_epi16(ab_lo, cd_lo),
                                  _mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_unpackhi_epi16(ab_hi, cd_hi)};
                __m512i w0 = _mm512_set1_epi32(dig[g][0]), w1 = _mm512_set1_epi32(dig[g][1]), w2 = _mm512_set1_epi32(dig[g][2]);
                for (int j = 0; j < 4; j++) {
                    acc[j][0] = _mm512_dpbusd_epi32(acc[j][0], col[j], w0);
                    acc[j][1] = _mm512_dpbusd_epi32(acc[j][1], col[j], w1);
                    acc[j][2] = _mm512_dpbusd_epi32(acc[j][2], col[j], w2);
                }
            }
            __m512i sum[4];
            for (int j = 0; j < 4; j++)
                sum[j] = _mm512_srli_epi32(undigit(acc[j][0], acc[j][1], acc[j][2]), PRECISION_BITS);
            __m512i packed = _mm512_packus_epi16(_mm512_packus_epi32(sum[0], sum[1]), _mm512_packus_epi32(sum[2], sum[3]));
            _mm512_mask_storeu_epi8(o + t, m, packed);
        }
    }
}

static int resize_window_vbmi(const uint8_t *src, Py_ssize_t stride, uint8_t *dst, const Plan *p) {
    int ybox0 = p->yb[0], ybox1 = p->yb[2 * (p->oh - 1)] + p->yb[2 * (p->oh - 1) + 1], rows = ybox1 - ybox0;
    Py_ssize_t mid_stride = (Py_ssize_t)p->ow * 3;
    uint8_t *mid = scratch_get((size_t)mid_stride * rows + 64);
    if (!mid) return -1;
    for (int y = 0; y < rows; y++) hpass_row_vbmi(p, src + (Py_ssize_t)(ybox0 + y) * stride, mid + y * mid_stride);
    vpass_vbmi(mid, mid_stride, ybox0, dst, p->oh, (int)mid_stride, p->yb, p->yk, p->yks);
    return 0;
}
#endif

/* Pillow's order: horizontal pass (rounded to 8 bits) over the rows the vertical pass needs,
 * then the vertical pass. Portable path: transpose -> row pass -> transpose -> row pass, so
 * both passes run over contiguous bytes the compiler vectorizes. */
static int resize_window(const uint8_t *src, Py_ssize_t stride, uint8_t *dst, const Plan *p, int generic) {
#ifdef HAVE_VBMI_PATH
    if (!generic && p->blk) return resize_window_vbmi(src, stride, dst, p);
#endif
    int wx = p->wx, oh = p->oh, ow = p->ow;
    int ybox0 = p->yb[0], ybox1 = p->yb[2 * (oh - 1)] + p->yb[2 * (oh - 1) + 1], rows = ybox1 - ybox0;
    size_t n_in = (size_t)wx * rows * 3 + 16, n_mid = (size_t)ow * rows * 3 + 16;
    size_t n_acc = sizeof(int32_t) * (size_t)(rows > ow ? rows : ow) * 3;
    uint8_t *base = scratch_get(n_in + 2 * n_mid + n_acc + 64);
    if (!base) return -1;
    uint8_t *t_in = base;         /* (wx, rows, 3) */
    uint8_t *t_mid = t_in + n_in; /* (ow, rows, 3) */
    uint8_t *mid = t_mid + n_mid; /* (rows, ow, 3) */
    int32_t *acc = (int32_t *)(((uintptr_t)(mid + n_mid) + 63) & ~(uintptr_t)63);
    transpose3(src + (Py_ssize_t)ybox0 * stride, stride, rows, wx, t_in, (Py_ssize_t)rows * 3);
    pass_rows(t_in, (Py_ssize_t)rows * 3, 0, t_mid, (Py_ssize_t)rows * 3, ow, rows * 3, p->xb, p->xk, p->xks, acc);
    transpose3(t_mid, (Py_ssize_t)rows * 3, ow, rows, mid, (Py_ssize_t)ow * 3);
    pass_rows(mid, (Py_ssize_t)ow * 3, ybox0, dst, (Py_ssize_t)ow * 3, oh, ow * 3, p->yb, p->yk, p->yks, acc);
    if (p->swap)
        for (uint8_t *d = dst, *end = dst + (size_t)oh * ow * 3; d < end; d += 3) {
            uint8_t t = d[0];
            d[0] = d[2];
            d[2] = t;
        }
    return 0;
}

static PyObject *py_resize(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    PyObject *src_obj, *dst_obj;
    int y0, y1, x0, x1, swap = 0, generic = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OiiiiO|pp", &src_obj, &y0, &y1, &x0, &x1, &dst_obj, &swap, &generic)) return NULL;
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    if (src.ndim != 3 || dst.ndim != 3 || src.shape[2] != 3 || dst.shape[2] != 3 ||
        src.itemsize != 1 || dst.itemsize != 1) {
        PyErr_SetString(PyExc_ValueError, "resize expects (H, W, 3) uint8 buffers");
        goto done;
    }
    int H = (int)src.shape[0], W = (int)src.shape[1], oh = (int)dst.shape[0], ow = (int)dst.shape[1];
    if (y0 < 0 || x0 < 0 || y1 > H || x1 > W || y1 <= y0 || x1 <= x0 || oh <= 0 || ow <= 0) {
        PyErr_SetString(PyExc_ValueError, "resize window out of bounds");
        goto done;
    }
    const uint8_t *base = (const uint8_t *)src.buf + (Py_ssize_t)y0 * W * 3 + (Py_ssize_t)x0 * 3;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    Plan *plan = plan_get(y1 - y0, x1 - x0, oh, ow, swap);
    failed = !plan || resize_window(base, (Py_ssize_t)W * 3, (uint8_t *)dst.buf, plan, generic);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *py_kernel(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return PyUnicode_FromString(use_simd ? "avx512vbmi" : "generic");
}

static PyMethodDef methods[] = {
    {"resize", py_resize, METH_VARARGS,
     "resize(src, y0, y1, x0, x1, dst, swap=False, generic=False): Pillow-exact antialiased bilinear."},
    {"kernel", py_kernel, METH_NOARGS,
     "kernel(): 'avx512vbmi' or 'generic', the path resize() takes on this CPU (downscales by more "
     "than ~14x always take the generic one)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resample", NULL, -1, methods};

PyMODINIT_FUNC PyInit__resample(void) {
    use_simd = simd_supported();
    return PyModule_Create(&module);
}
