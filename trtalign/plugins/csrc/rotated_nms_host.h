// Host (CPU) implementation of EfficientRotatedNMS_TRT: the same algorithm as the CUDA kernels, written as plain
// loops over the same geometry functions. Used by the CI tests (no CUDA, no TensorRT needed) and as the oracle of the
// GPU test. Semantics: see rotated_nms_common.h.
#ifndef TRTALIGN_ROTATED_NMS_HOST_H
#define TRTALIGN_ROTATED_NMS_HOST_H

#include "rotated_nms_common.h"

namespace trtalign
{

//! Run rotated NMS on the CPU. boxes [B,N,5] and scores [B,N,C] of ``type``; outputs numDetections [B],
//! outBoxes [B,K,5] and outScores [B,K] of ``type``, outClasses [B,K] int32, K = p.maxOutputBoxes.
//! Returns 0 on success, -1 on invalid parameters (outputs untouched).
int rotatedNmsHost(RotatedNmsParams const& p, NmsDataType type, void const* boxes, void const* scores,
    int32_t* numDetections, void* outBoxes, void* outScores, int32_t* outClasses);

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_HOST_H
