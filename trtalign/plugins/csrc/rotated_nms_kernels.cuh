// CUDA kernels of EfficientRotatedNMS_TRT. Semantics: rotated_nms_common.h. Layout of inputs and outputs is that of
// TensorRT's EfficientNMS_TRT with 5 values per box: boxes [B,N,5], scores [B,N,C] (FP32 or FP16);
// num_detections [B,1] int32, detection_boxes [B,K,5], detection_scores [B,K] (input type), detection_classes [B,K]
// int32. Each image is processed independently (its own segment of every buffer).
//
// Pipeline: (1) a filter kernel writes one 64-bit key per passing candidate, score bits in the high word and the
// bit-inverted candidate index in the low word, so that one descending radix sort orders by score and breaks ties by
// lower index whatever order the atomic compaction produced (deterministic); (2) cub's segmented radix sort, one
// segment per image; (3) one thread block per image runs the greedy NMS over the first min(count, topK) candidates.
#ifndef TRTALIGN_ROTATED_NMS_KERNELS_CUH
#define TRTALIGN_ROTATED_NMS_KERNELS_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "rotated_nms_common.h"

namespace trtalign
{

//! Bytes of device workspace that rotatedNmsLaunch needs for these sizes (includes alignment padding).
size_t rotatedNmsWorkspaceSize(int32_t batchSize, int32_t numBoxes, int32_t numClasses);

//! Enqueue rotated NMS on ``stream``. All pointers are device pointers. ``workspace`` must hold at least
//! rotatedNmsWorkspaceSize(...) bytes. Returns cudaSuccess or the first CUDA error (cudaErrorInvalidValue for bad
//! parameters or a too small workspace).
cudaError_t rotatedNmsLaunch(RotatedNmsParams const& p, NmsDataType type, void const* boxes, void const* scores,
    int32_t* numDetections, void* outBoxes, void* outScores, int32_t* outClasses, void* workspace,
    size_t workspaceSize, cudaStream_t stream);

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_KERNELS_CUH
