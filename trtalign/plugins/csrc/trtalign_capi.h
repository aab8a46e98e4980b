// C test API of the trtalign plugin sources, called from Python through ctypes (tests and tools).
// Every function returns 0 on success and a negative number on failure (-1: invalid arguments, -2: CUDA error).
#ifndef TRTALIGN_CAPI_H
#define TRTALIGN_CAPI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//! Version of this API (bumped when a signature changes).
int32_t trtalign_capi_version(void);

//! IoU of n pairs of rotated boxes a[i], b[i] (5 floats each: cx, cy, w, h, angle) into out[i].
//! precision 0: FP32 geometry (what the kernels use), 1: FP64 geometry.
int32_t trtalign_rotated_iou(float const* a, float const* b, int64_t n, int32_t precision, float* out);

//! Intersection area of n pairs, like trtalign_rotated_iou.
int32_t trtalign_rotated_intersection(float const* a, float const* b, int64_t n, int32_t precision, float* out);

//! Rotated NMS on the CPU. boxes [B,N,5] and scores [B,N,C] of dtype (0 float32, 1 float16 bits); outputs
//! num_detections [B] int32, out_boxes [B,K,5] and out_scores [B,K] of dtype, out_classes [B,K] int32.
int32_t trtalign_rotated_nms_host(void const* boxes, void const* scores, int32_t dtype, int32_t batch,
    int32_t num_boxes, int32_t num_classes, float score_threshold, float iou_threshold, int32_t max_output_boxes,
    int32_t background_class, int32_t score_activation, int32_t class_agnostic, int32_t box_coding, int32_t top_k,
    int32_t* num_detections, void* out_boxes, void* out_scores, int32_t* out_classes);

//! Same on the GPU (only in libraries built with CUDA): host pointers in and out; runs ``repeats`` (>= 1) times
//! and writes the mean time of the enqueued kernels (CUDA events, host<->device copies excluded) to *kernel_ms.
int32_t trtalign_rotated_nms_cuda(void const* boxes, void const* scores, int32_t dtype, int32_t batch,
    int32_t num_boxes, int32_t num_classes, float score_threshold, float iou_threshold, int32_t max_output_boxes,
    int32_t background_class, int32_t score_activation, int32_t class_agnostic, int32_t box_coding, int32_t top_k,
    int32_t* num_detections, void* out_boxes, void* out_scores, int32_t* out_classes, int32_t repeats,
    float* kernel_ms);

//! Message of the last failure in this thread ("" when none).
char const* trtalign_last_error(void);

#ifdef __cplusplus
}
#endif

#endif // TRTALIGN_CAPI_H
