/*
 * fd_postprocess_f32: raw int8 head outputs -> scored, NMS'd face boxes (float32).
 * See fd_postprocess.h.  Mirrors facedet/detector/postprocess.py (detect_boxes),
 * facedet/detector/codec.py (decode) and facedet/boxes.py (box_iou, nms).
 */
#include <math.h>

#include "fd_postprocess.h"

typedef struct {
    int32_t index;      /* prior */
    float score;
    float box[4];       /* x1, y1, x2, y2 */
} fd_candidate;

size_t fd_postprocess_get_buffer_size(int32_t priors) { return (size_t)priors * sizeof(fd_candidate); }

/* Candidate a ranks before b: higher score, then lower prior index. */
static int fd_before(const fd_candidate *a, const fd_candidate *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static void fd_sift_down(fd_candidate *c, int32_t root, int32_t n) {
    for (;;) {
        int32_t child = 2 * root + 1;
        fd_candidate t;
        if (child >= n) return;
        /* a min-heap under "ranks before": the root is the candidate ranked last */
        if (child + 1 < n && fd_before(&c[child], &c[child + 1])) child++;
        if (!fd_before(&c[root], &c[child])) return;
        t = c[root];
        c[root] = c[child];
        c[child] = t;
        root = child;
    }
}

/* Heapsort into rank order (a total order, so any correct sort gives the same result). */
static void fd_sort_candidates(fd_candidate *c, int32_t n) {
    int32_t i;
    for (i = n / 2 - 1; i >= 0; i--) fd_sift_down(c, i, n);
    for (i = n - 1; i > 0; i--) {
        fd_candidate t = c[0];
        c[0] = c[i];
        c[i] = t;
        fd_sift_down(c, 0, i);
    }
}

static float fd_area(const float *b) {
    float w = b[2] - b[0], h = b[3] - b[1];
    if (w < 0.0f) w = 0.0f;
    if (h < 0.0f) h = 0.0f;
    return w * h;
}

static float fd_iou(const float *a, const float *b) {
    float lt_x = a[0] > b[0] ? a[0] : b[0];
    float lt_y = a[1] > b[1] ? a[1] : b[1];
    float rb_x = a[2] < b[2] ? a[2] : b[2];
    float rb_y = a[3] < b[3] ? a[3] : b[3];
    float w = rb_x - lt_x, h = rb_y - lt_y, inter, uni;
    if (w < 0.0f) w = 0.0f;
    if (h < 0.0f) h = 0.0f;
    inter = w * h;
    uni = fd_area(a) + fd_area(b) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

int32_t fd_postprocess_f32(const fd_decode_params *p, const int8_t *conf, const int8_t *loc, float score_threshold,
                           float nms_threshold, int32_t max_faces, void *scratch, float *faces) {
    fd_candidate *cand = (fd_candidate *)scratch;
    int32_t n = 0, kept = 0, h, i, j, prior = 0;
    for (h = 0; h < p->n_heads; h++) {
        const fd_head_decode *d = &p->heads[h];
        int32_t cells = d->fh * d->fw;
        for (i = 0; i < cells; i++, prior++) {
            /* softmax over (background, face) as torch.softmax computes it */
            float c0 = (float)(conf[2 * prior] - d->conf_zp) * d->conf_scale;
            float c1 = (float)(conf[2 * prior + 1] - d->conf_zp) * d->conf_scale;
            float m = c0 > c1 ? c0 : c1;
            float e0 = expf(c0 - m), e1 = expf(c1 - m);
            float score = e1 / (e0 + e1);
            if (score > score_threshold) {
                const int8_t *l = loc + 4 * prior;
                float cx = ((float)(i % d->fw) + 0.5f) * d->step;
                float cy = ((float)(i / d->fw) + 0.5f) * d->step;
                float l0 = (float)(l[0] - d->loc_zp) * d->loc_scale;
                float l1 = (float)(l[1] - d->loc_zp) * d->loc_scale;
                float l2 = (float)(l[2] - d->loc_zp) * d->loc_scale;
                float l3 = (float)(l[3] - d->loc_zp) * d->loc_scale;
                float bx = cx + l0 * p->var_xy * d->anchor;
                float by = cy + l1 * p->var_xy * d->anchor;
                float hw = d->anchor * expf(l2 * p->var_wh) / 2.0f;
                float hh = d->anchor * expf(l3 * p->var_wh) / 2.0f;
                cand[n].index = prior;
                cand[n].score = score;
                cand[n].box[0] = bx - hw;
                cand[n].box[1] = by - hh;
                cand[n].box[2] = bx + hw;
                cand[n].box[3] = by + hh;
                n++;
            }
        }
    }
    fd_sort_candidates(cand, n);
    /* greedy NMS: a suppressed candidate gets score -1 */
    for (i = 0; i < n && kept < max_faces; i++) {
        if (cand[i].score < 0.0f) continue;
        faces[5 * kept + 0] = cand[i].box[0];
        faces[5 * kept + 1] = cand[i].box[1];
        faces[5 * kept + 2] = cand[i].box[2];
        faces[5 * kept + 3] = cand[i].box[3];
        faces[5 * kept + 4] = cand[i].score;
        kept++;
        for (j = i + 1; j < n; j++) {
            if (cand[j].score >= 0.0f && fd_iou(cand[i].box, cand[j].box) > nms_threshold) cand[j].score = -1.0f;
        }
    }
    return kept;
}
