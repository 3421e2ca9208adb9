/*
 * cascade-tui native helpers for llama.cpp (loaded with ctypes, compiled on first use by
 * backends/llamacpp/native.py and cached in ~/.cache/cascade-tui/).
 *
 * 1. rc_eval_cb: a ggml_backend_sched_eval_callback that captures expert routing. llama.cpp names
 *    the selected-experts tensor of MoE layer <il> "ffn_moe_topk-<il>" (GGML_TYPE_I32, a view of
 *    [n_expert_used, n_tokens] with row stride nb[1]). In the "ask" phase we answer true only for
 *    those tensors (and, when asked to, for the router probabilities "ffn_moe_probs-<il>"), so the
 *    scheduler splits the graph as little as possible. In the data phase we copy the rows out with
 *    ggml_backend_tensor_get, which works for every backend (CPU, CUDA, ...). The callback ALWAYS
 *    returns true in the data phase: returning false makes ggml stop the graph silently while
 *    llama_decode still reports success with garbage logits.
 *
 * 2. rc_log_cb: a ggml_log_callback that appends llama.cpp's log to a file (never the terminal).
 *    A C callback avoids calling into Python from llama.cpp's loader (a Python log callback
 *    segfaulted during model load on a CUDA host).
 *
 * ggml_backend_tensor_get is not linked: Python passes its address (from libggml-base, already
 * loaded by llama-cpp-python) in rc_state.tensor_get, so this library has no link-time dependency
 * and cannot pick up a second copy of ggml.
 *
 * Built with the ggml headers that llama-cpp-python installs when they can be found; otherwise
 * (RC_NO_GGML_HEADERS) with the few declarations below, written by hand for the pinned version
 * (llama-cpp-python 0.3.36, ggml 0.25.3). rc_layout() reports the offsets actually compiled in so
 * Python can check them against its own mirror of struct ggml_tensor.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef RC_NO_GGML_HEADERS
#include "ggml.h"
#else
#include <stdbool.h>
#define GGML_MAX_DIMS 4
#define GGML_MAX_SRC 10
#define GGML_MAX_OP_PARAMS 64
#define GGML_MAX_NAME 64
enum ggml_type { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_I32 = 26 };
enum ggml_log_level { GGML_LOG_LEVEL_NONE = 0 };
struct ggml_tensor {
    enum ggml_type type;
    void *buffer;
    int64_t ne[GGML_MAX_DIMS];
    size_t nb[GGML_MAX_DIMS];
    int op; /* enum ggml_op */
    int32_t op_params[GGML_MAX_OP_PARAMS / sizeof(int32_t)];
    int32_t flags;
    struct ggml_tensor *src[GGML_MAX_SRC];
    struct ggml_tensor *view_src;
    size_t view_offs;
    void *data;
    char name[GGML_MAX_NAME];
    void *extra;
    char padding[8];
};
#endif

#if defined(_WIN32)
#define RC_API __declspec(dllexport)
#else
#define RC_API __attribute__((visibility("default")))
#endif

#define RC_VERSION 4

typedef void (*rc_tensor_get_fn)(const struct ggml_tensor *t, void *data, size_t offset, size_t size);

/* Mirrored by backends/llamacpp/routing.py (RcState): keep the two in sync. */
typedef struct {
    int32_t enabled;     /* 0: answer false to every ask */
    int32_t n_layer;     /* layers addressable by il (0 .. n_layer-1) */
    int32_t k;           /* n_expert_used: ints per captured row */
    int32_t cap_tokens;  /* rows per layer in topk/probs */
    int32_t *topk;       /* [n_layer][cap_tokens][k] */
    int32_t *rows;       /* [n_layer] rows written since the last reset */
    int32_t want_probs;  /* also capture ffn_moe_probs-<il> (tests) */
    int32_t n_expert;    /* floats per probs row */
    float *probs;        /* [n_layer][cap_tokens][n_expert] or NULL */
    int32_t *prob_rows;  /* [n_layer] */
    int32_t n_calls;     /* data-phase calls since the last reset */
    int32_t n_errors;    /* tensors that did not fit (bad type/shape/layer/overflow) */
    rc_tensor_get_fn tensor_get;
    uint8_t *scratch;    /* staging for one strided copy */
    size_t scratch_size;
    int64_t ns;          /* nanoseconds spent in data-phase calls since the last reset */
} rc_state;

static const char TOPK[] = "ffn_moe_topk-";
static const char PROBS[] = "ffn_moe_probs-";

/* "<prefix><digits>" exactly -> layer index, else -1 */
static int match_layer(const char *name, const char *prefix, size_t plen) {
    if (strncmp(name, prefix, plen) != 0) return -1;
    const char *p = name + plen;
    if (*p == '\0') return -1;
    long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
    }
    return (int)v;
}

/* bytes ggml_nbytes() reports for a tensor of a 4-byte type (the most tensor_get may read) */
static size_t span_bytes(const struct ggml_tensor *t) {
    size_t n = 4;
    for (int i = 0; i < GGML_MAX_DIMS; i++) {
        if (t->ne[i] <= 0) return 0;
        n += (size_t)(t->ne[i] - 1) * t->nb[i];
    }
    return n;
}

/* Copy a [width, rows] 4-byte tensor (rows strided by nb[1]) into dst (dense rows). */
static int copy_rows(rc_state *s, const struct ggml_tensor *t, void *dst, int64_t width, int64_t rows) {
    const size_t row_bytes = (size_t)width * 4;
    const size_t span = span_bytes(t);
    if (span == 0) return -1;
    if (t->nb[0] == 4 && (size_t)(rows - 1) * t->nb[1] + row_bytes <= span) {
        if (t->nb[1] == row_bytes) { /* contiguous: one copy straight into dst */
            s->tensor_get(t, dst, 0, row_bytes * (size_t)rows);
            return 0;
        }
        if (s->scratch && span <= s->scratch_size) { /* one transfer, then unstride */
            s->tensor_get(t, s->scratch, 0, span);
            for (int64_t r = 0; r < rows; r++)
                memcpy((uint8_t *)dst + r * row_bytes, s->scratch + r * t->nb[1], row_bytes);
            return 0;
        }
        for (int64_t r = 0; r < rows; r++) /* one transfer per row */
            s->tensor_get(t, (uint8_t *)dst + r * row_bytes, (size_t)r * t->nb[1], row_bytes);
        return 0;
    }
    /* fully general: element by element (never expected for these tensors) */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width; c++) {
            size_t off = (size_t)r * t->nb[1] + (size_t)c * t->nb[0];
            if (off + 4 > span) return -1;
            s->tensor_get(t, (uint8_t *)dst + (r * width + c) * 4, off, 4);
        }
    return 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool eval_cb_data(struct ggml_tensor *t, rc_state *s);

/* The data phase is timed (rc_state.ns) so the engine can keep capture out of verify times. */
RC_API bool rc_eval_cb(struct ggml_tensor *t, bool ask, void *user_data) {
    rc_state *s = (rc_state *)user_data;
    if (s == NULL || t == NULL) return !ask;
    if (ask) {
        if (!s->enabled) return false;
        if (match_layer(t->name, TOPK, sizeof(TOPK) - 1) >= 0) return true;
        if (s->want_probs && s->probs && match_layer(t->name, PROBS, sizeof(PROBS) - 1) >= 0) return true;
        return false;
    }
    const int64_t t0 = now_ns();
    eval_cb_data(t, s);
    s->ns += now_ns() - t0;
    return true;
}

static bool eval_cb_data(struct ggml_tensor *t, rc_state *s) {
    /* data phase: from here on, always return true */
    if (!s->enabled || s->tensor_get == NULL) return true;
    int il = match_layer(t->name, TOPK, sizeof(TOPK) - 1);
    int is_probs = 0;
    if (il < 0 && s->want_probs && s->probs) {
        il = match_layer(t->name, PROBS, sizeof(PROBS) - 1);
        is_probs = il >= 0;
    }
    if (il < 0 || il >= s->n_layer) return true; /* not ours (e.g. an extra MTP layer) */
    s->n_calls++;
    const int64_t width = t->ne[0], rows = t->ne[1];
    if (t->ne[2] != 1 || t->ne[3] != 1 || rows <= 0) { s->n_errors++; return true; }
    if (is_probs) {
        if (t->type != GGML_TYPE_F32 || width != s->n_expert) { s->n_errors++; return true; }
        int32_t have = s->prob_rows[il];
        if (have + rows > s->cap_tokens) { s->n_errors++; return true; }
        float *dst = s->probs + ((size_t)il * s->cap_tokens + have) * s->n_expert;
        if (copy_rows(s, t, dst, width, rows) != 0) { s->n_errors++; return true; }
        s->prob_rows[il] = have + (int32_t)rows;
    } else {
        if (t->type != GGML_TYPE_I32 || width != s->k) { s->n_errors++; return true; }
        int32_t have = s->rows[il];
        if (have + rows > s->cap_tokens) { s->n_errors++; return true; }
        int32_t *dst = s->topk + ((size_t)il * s->cap_tokens + have) * s->k;
        if (copy_rows(s, t, dst, width, rows) != 0) { s->n_errors++; return true; }
        s->rows[il] = have + (int32_t)rows;
    }
    return true;
}

/* ---- log sink ---------------------------------------------------------------------------- */

static FILE *g_log = NULL;

RC_API int rc_log_open(const char *path) {
    FILE *f = fopen(path, "a");
    if (f == NULL) return -1;
    FILE *old = g_log;
    g_log = f;
    if (old) fclose(old);
    return 0;
}

RC_API void rc_log_cb(int level, const char *text, void *user_data) {
    (void)level;
    (void)user_data;
    if (g_log == NULL || text == NULL) return;
    fputs(text, g_log);
    fflush(g_log);
}

/* ---- introspection ----------------------------------------------------------------------- */

/* offsets compiled in: type, ne, nb, data, name, sizeof(ggml_tensor), sizeof(rc_state), version */
RC_API void rc_layout(int64_t *out) {
    out[0] = (int64_t)offsetof(struct ggml_tensor, type);
    out[1] = (int64_t)offsetof(struct ggml_tensor, ne);
    out[2] = (int64_t)offsetof(struct ggml_tensor, nb);
    out[3] = (int64_t)offsetof(struct ggml_tensor, data);
    out[4] = (int64_t)offsetof(struct ggml_tensor, name);
    out[5] = (int64_t)sizeof(struct ggml_tensor);
    out[6] = (int64_t)sizeof(rc_state);
    out[7] = RC_VERSION;
#ifdef RC_NO_GGML_HEADERS
    out[8] = 0;
#else
    out[8] = 1;
#endif
}
