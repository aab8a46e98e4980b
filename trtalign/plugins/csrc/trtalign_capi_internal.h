// Helpers shared by the host and CUDA parts of the C test API (not part of the API).
#ifndef TRTALIGN_CAPI_INTERNAL_H
#define TRTALIGN_CAPI_INTERNAL_H

#include "rotated_nms_common.h"

namespace trtalign
{
void setLastError(char const* message);

//! What an NMS entry point of the C API runs: the parameters and the element type of boxes and scores.
struct NmsRequest
{
    RotatedNmsParams params;
    NmsDataType type = NmsDataType::kFLOAT32;
};

//! Fill and validate an NMS request from the flat C arguments; false when invalid (message in trtalign_last_error).
bool makeNmsRequest(int32_t dtype, int32_t batch, int32_t numBoxes, int32_t numClasses, float scoreThreshold,
    float iouThreshold, int32_t maxOutputBoxes, int32_t backgroundClass, int32_t scoreActivation,
    int32_t classAgnostic, int32_t boxCoding, int32_t topK, NmsRequest& request);
} // namespace trtalign

#endif // TRTALIGN_CAPI_INTERNAL_H
