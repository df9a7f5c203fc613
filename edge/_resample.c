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
 * resize(src, y0, y1, x0, x1, dst[, swap[, threads]]): src is a C-contiguous (H, W, 3) uint8
 * buffer; the window [y0:y1, x0:x1] is resized into the C-contiguous (h, w, 3) uint8 buffer dst,
 * with the channel order reversed when `swap` (BGR frame -> RGB model). The GIL is released while
 * computing. With `threads` > 1 strips of output rows are resized by that many threads at once (at
 * most MAX_PARTS: the caller and helper threads kept from call to call): the interpreter's cores are
 * idle while a frame is resized, and a frame->top-k call is the resize plus the invoke, so on
 * 2 cores this halves the part of the frame path that is ours.
 *
 * Portable C only: the device is an aarch64 board, so no code path here may depend on one x86
 * extension. Both passes run over contiguous bytes that GCC auto-vectorises (NEON on aarch64,
 * where it is baseline; on x86-64 a clone for AVX2 is picked at load time, SSE2 otherwise).
 * An AVX-512 VBMI/VNNI kernel lived here until 2026-11: no device runs it, nor every x86 CI
 * machine, so it went (docs/benchmarks/runtime.md has the measurements of the portable path).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
#define VECTORIZE __attribute__((target_clones("avx2", "default")))
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
    int swap;
} Plan;

static void plan_free(Plan *p) {
    free(p->xb); free(p->yb); free(p->xk); free(p->yk);
    memset(p, 0, sizeof(*p));
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
    return p;
}

/* Pillow's order: horizontal pass (rounded to 8 bits) over the rows the vertical pass needs,
 * then the vertical pass. Portable path: transpose -> row pass -> transpose -> row pass, so
 * both passes run over contiguous bytes the compiler vectorizes. Output rows [oy0, oy1) only:
 * strips are independent (each takes the input rows it needs), so threads can share a frame. */
static int resize_rows(const uint8_t *src, Py_ssize_t stride, uint8_t *dst, const Plan *p, int oy0, int oy1) {
    int wx = p->wx, ow = p->ow;
    int ybox0 = p->yb[2 * oy0], ybox1 = p->yb[2 * (oy1 - 1)] + p->yb[2 * (oy1 - 1) + 1], rows = ybox1 - ybox0;
    size_t n_in = (size_t)wx * rows * 3 + 16, n_mid = (size_t)ow * rows * 3 + 16;
    size_t n_acc = sizeof(int32_t) * (size_t)(rows > ow ? rows : ow) * 3;
    uint8_t *base = scratch_get(n_in + 2 * n_mid + n_acc + 64);
    if (!base) return -1;
    uint8_t *t_in = base;         /* (wx, rows, 3) */
    uint8_t *t_mid = t_in + n_in; /* (ow, rows, 3) */
    uint8_t *mid = t_mid + n_mid; /* (rows, ow, 3) */
    int32_t *acc = (int32_t *)(((uintptr_t)(mid + n_mid) + 63) & ~(uintptr_t)63);
    uint8_t *out = dst + (size_t)oy0 * ow * 3;
    transpose3(src + (Py_ssize_t)ybox0 * stride, stride, rows, wx, t_in, (Py_ssize_t)rows * 3);
    pass_rows(t_in, (Py_ssize_t)rows * 3, 0, t_mid, (Py_ssize_t)rows * 3, ow, rows * 3, p->xb, p->xk, p->xks, acc);
    transpose3(t_mid, (Py_ssize_t)rows * 3, ow, rows, mid, (Py_ssize_t)ow * 3);
    pass_rows(mid, (Py_ssize_t)ow * 3, ybox0, out, (Py_ssize_t)ow * 3, oy1 - oy0, ow * 3, p->yb + 2 * oy0,
              p->yk + (size_t)oy0 * p->yks, p->yks, acc);
    if (p->swap)
        for (uint8_t *d = out, *end = out + (size_t)(oy1 - oy0) * ow * 3; d < end; d += 3) {
            uint8_t t = d[0];
            d[0] = d[2];
            d[2] = t;
        }
    return 0;
}

/* The work of one call, in strips of at most STRIP_ROWS output rows, as many for every thread (224
 * rows on 2 threads: 8 strips of 28, not 7 of 32 of which one thread would do 4). A strip's scratch
 * (~100 KB for a 480-row window) stays in the core's L2 cache from strip to strip, where a
 * whole-window pass would write 1.3 MB and push the model's weights out of the cache the next
 * invoke needs (measured: a
 * 480x480 -> 224x224 resize right after an invoke took 0.85 ms whole-window, 0.44 ms in strips). A
 * strip recomputes the few input rows it shares with the previous one (~4 % more horizontal work).
 *
 * Threads take strips from one counter (`next`: the call's generation in the high bits, the next
 * strip in the low STRIP_BITS), so a helper that wakes late, or shares its core with something else, takes
 * fewer strips instead of holding the call up. One call at a time uses the helpers (`pool_busy`); a
 * call that finds them taken (another Python thread resizing) runs alone rather than wait. Helpers
 * sleep on a condition variable between calls, so they take no CPU while the interpreter runs.
 * After fork() the child has no helpers: they are started again. */
#define STRIP_ROWS 32
#define MAX_PARTS 4
#define STRIP_BITS 24 /* of the 64-bit counter; the generation has the other 40 */

typedef struct {
    const uint8_t *src;
    Py_ssize_t stride;
    uint8_t *dst;
    const Plan *plan;
    int strips, strip_rows;
} Job;

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static int pool_helpers;              /* helper threads running */
static uint64_t pool_generation;      /* bumped per call that wakes the helpers */
static int pool_parts;                /* threads the current call may use, the caller's included */
static Job pool_job;
static _Atomic uint64_t pool_next; /* (generation << STRIP_BITS) | next strip */
static atomic_int pool_active;  /* helpers between claiming a strip and finishing it */
static atomic_int pool_failed;
static uint64_t pool_born[MAX_PARTS]; /* pool_generation when each helper was started */
static int pool_refused;              /* pthread_create failed: no more attempts (until a fork) */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

static int resize_strip(const Job *job, int strip) {
    int oy0 = strip * job->strip_rows, oy1 = oy0 + job->strip_rows;
    if (oy1 > job->plan->oh) oy1 = job->plan->oh;
    return resize_rows(job->src, job->stride, job->dst, job->plan, oy0, oy1);
}

/* Claim the next strip of call `generation`; -1 when none is left (or the call is over). */
static int claim_strip(uint64_t generation, int strips) {
    uint64_t cur = atomic_load(&pool_next);
    for (;;) {
        if (cur >> STRIP_BITS != (generation & (~(uint64_t)0 >> STRIP_BITS))) return -1;
        int strip = (int)(cur & (((uint64_t)1 << STRIP_BITS) - 1));
        if (strip >= strips) return -1;
        if (atomic_compare_exchange_weak(&pool_next, &cur, cur + 1)) return strip;
    }
}

static void *pool_helper(void *arg) {
    int index = (int)(intptr_t)arg; /* 1 .. MAX_PARTS - 1: the caller is 0 */
    pthread_mutex_lock(&pool_mu);
    uint64_t seen = pool_born[index]; /* the call that started it may have posted its work already */
    for (;;) {
        while (pool_generation == seen) pthread_cond_wait(&pool_wake, &pool_mu);
        seen = pool_generation;
        if (index >= pool_parts) continue;
        Job job = pool_job;
        pthread_mutex_unlock(&pool_mu);
        for (;;) {
            atomic_fetch_add(&pool_active, 1); /* before the claim: the caller waits for it from here */
            int strip = claim_strip(seen, job.strips);
            if (strip >= 0 && resize_strip(&job, strip)) atomic_store(&pool_failed, 1);
            atomic_fetch_sub(&pool_active, 1);
            if (strip < 0) break;
        }
        pthread_mutex_lock(&pool_mu);
    }
    return NULL;
}

/* The child of a fork has only the forking thread: whatever the helpers were doing (a resize on
 * another thread, mid-strip) is gone with them, so every piece of pool state starts over. Re-initialising
 * a mutex another thread held at the fork is what glibc's own atfork handlers do. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool_busy, NULL);
    pthread_mutex_init(&pool_mu, NULL);
    pthread_cond_init(&pool_wake, NULL);
    pool_helpers = 0;
    pool_refused = 0;
    atomic_store(&pool_active, 0);
    atomic_store(&pool_failed, 0);
}

/* Start helpers up to `wanted` (pool_mu held); returns how many run. Once the system refuses a thread
 * (a pids limit, no memory), no further call asks again: the calls just use the helpers there are. */
static int pool_grow(int wanted) {
    static int atfork_set;
    if (!atfork_set) atfork_set = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    while (pool_helpers < wanted && !pool_refused) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pool_born[pool_helpers + 1] = pool_generation;
        int rc = pthread_create(&t, &attr, pool_helper, (void *)(intptr_t)(pool_helpers + 1));
        pthread_attr_destroy(&attr);
        if (rc) {
            pool_refused = 1;
            break;
        }
        pool_helpers++;
    }
    return pool_helpers;
}

static int resize_window(const uint8_t *src, Py_ssize_t stride, uint8_t *dst, const Plan *p, int threads) {
    static long cpus;
    if (!cpus) cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int strips = (p->oh + STRIP_ROWS - 1) / STRIP_ROWS;
    int parts = threads < MAX_PARTS ? threads : MAX_PARTS;
    if (parts > cpus) parts = (int)cpus; /* more threads than cores would only wait for each other */
    if (parts > strips) parts = strips;
    if (parts > 1) strips = (strips + parts - 1) / parts * parts; /* as many strips for every thread */
    int strip_rows = (p->oh + strips - 1) / strips;
    Job job = {src, stride, dst, p, (p->oh + strip_rows - 1) / strip_rows, strip_rows};
    if (parts < 2 || job.strips >= (1 << STRIP_BITS) || pthread_mutex_trylock(&pool_busy)) {
        for (int i = 0; i < job.strips; i++)
            if (resize_strip(&job, i)) return -1;
        return 0;
    }
    pthread_mutex_lock(&pool_mu);
    pool_parts = parts > pool_grow(parts - 1) + 1 ? pool_helpers + 1 : parts;
    pool_job = job;
    atomic_store(&pool_failed, 0);
    uint64_t generation = ++pool_generation;
    atomic_store(&pool_next, (generation & (~(uint64_t)0 >> STRIP_BITS)) << STRIP_BITS);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_mu);
    int failed = 0, strip;
    while ((strip = claim_strip(generation, job.strips)) >= 0) failed |= resize_strip(&job, strip);
    while (atomic_load(&pool_active) > 0) CPU_RELAX(); /* at most one strip per helper in flight */
    failed |= atomic_load(&pool_failed);
    pthread_mutex_unlock(&pool_busy);
    return failed ? -1 : 0;
}

static PyObject *py_resize(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    PyObject *src_obj, *dst_obj;
    int y0, y1, x0, x1, swap = 0, threads = 1;
    (void)self;
    if (!PyArg_ParseTuple(args, "OiiiiO|pi", &src_obj, &y0, &y1, &x0, &x1, &dst_obj, &swap, &threads)) return NULL;
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
    failed = !plan || resize_window(base, (Py_ssize_t)W * 3, (uint8_t *)dst.buf, plan, threads);
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

/* The instruction set the compiler vectorised the passes for, as selected on this CPU. */
static PyObject *py_kernel(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
#if defined(__aarch64__)
    return PyUnicode_FromString("c-neon");
#elif defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
    __builtin_cpu_init();
    return PyUnicode_FromString(__builtin_cpu_supports("avx2") ? "c-avx2" : "c-sse2");
#else
    return PyUnicode_FromString("c");
#endif
}

static PyMethodDef methods[] = {
    {"resize", py_resize, METH_VARARGS,
     "resize(src, y0, y1, x0, x1, dst, swap=False, threads=1): Pillow-exact antialiased bilinear, in up to "
     "`threads` threads (at most 4) sharing its strips of rows."},
    {"kernel", py_kernel, METH_NOARGS,
     "kernel(): 'c-neon', 'c-avx2', 'c-sse2' or 'c': the vector instructions resize() runs with here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resample", NULL, -1, methods};

PyMODINIT_FUNC PyInit__resample(void) {
    return PyModule_Create(&module);
}
