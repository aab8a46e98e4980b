// Host part of the C test API: rotated IoU and the CPU NMS. Needs only a C++ compiler.
#include "trtalign_capi.h"

#include "rotated_nms_host.h"
#include "trtalign_capi_internal.h"

#include <string>

namespace
{
thread_local std::string gLastError;

template <typename Real, bool kIoU>
void pairwise(float const* a, float const* b, int64_t n, float* out)
{
    for (int64_t i = 0; i < n; ++i)
    {
        trtalign::RotatedBox<Real> const x{(Real) a[5 * i], (Real) a[5 * i + 1], (Real) a[5 * i + 2],
            (Real) a[5 * i + 3], (Real) a[5 * i + 4]};
        trtalign::RotatedBox<Real> const y{(Real) b[5 * i], (Real) b[5 * i + 1], (Real) b[5 * i + 2],
            (Real) b[5 * i + 3], (Real) b[5 * i + 4]};
        out[i] = (float) (kIoU ? trtalign::rotatedIoU<Real>(x, y) : trtalign::rotatedIntersectionArea<Real>(x, y));
    }
}

//! ``pairwise`` after checking the C arguments (FP32 or FP64 geometry); 0, or -1 with the reason under ``function``.
template <bool kIoU>
int32_t pairwiseChecked(char const* function, float const* a, float const* b, int64_t n, int32_t precision, float* out)
{
    if (a == nullptr || b == nullptr || out == nullptr || n < 0 || (precision != 0 && precision != 1))
    {
        trtalign::setLastError((std::string(function) + ": null pointer, negative n or precision not 0/1").c_str());
        return -1;
    }
    precision ? pairwise<double, kIoU>(a, b, n, out) : pairwise<float, kIoU>(a, b, n, out);
    return 0;
}
} // namespace

namespace trtalign
{
void setLastError(char const* message)
{
    gLastError = message ? message : "";
}

bool makeNmsRequest(int32_t dtype, int32_t batch, int32_t numBoxes, int32_t numClasses, float scoreThreshold,
    float iouThreshold, int32_t maxOutputBoxes, int32_t backgroundClass, int32_t scoreActivation,
    int32_t classAgnostic, int32_t boxCoding, int32_t topK, NmsRequest& request)
{
    if (dtype != 0 && dtype != 1)
    {
        setLastError("dtype must be 0 (float32) or 1 (float16)");
        return false;
    }
    request.type = dtype == 1 ? NmsDataType::kFLOAT16 : NmsDataType::kFLOAT32;
    RotatedNmsParams& p = request.params;
    p.scoreThreshold = scoreThreshold;
    p.iouThreshold = iouThreshold;
    p.maxOutputBoxes = maxOutputBoxes;
    p.backgroundClass = backgroundClass;
    p.scoreActivation = scoreActivation;
    p.classAgnostic = classAgnostic;
    p.boxCoding = boxCoding;
    p.topK = topK;
    p.batchSize = batch;
    p.numBoxes = numBoxes;
    p.numClasses = numClasses;
    char const* msg = validateRotatedNmsParams(p);
    if (msg != nullptr)
    {
        setLastError(msg);
        return false;
    }
    return true;
}
} // namespace trtalign

extern "C" {

int32_t trtalign_capi_version(void)
{
    return 1;
}

char const* trtalign_last_error(void)
{
    return gLastError.c_str();
}

int32_t trtalign_rotated_iou(float const* a, float const* b, int64_t n, int32_t precision, float* out)
{
    return pairwiseChecked<true>("trtalign_rotated_iou", a, b, n, precision, out);
}

int32_t trtalign_rotated_intersection(float const* a, float const* b, int64_t n, int32_t precision, float* out)
{
    return pairwiseChecked<false>("trtalign_rotated_intersection", a, b, n, precision, out);
}

int32_t trtalign_rotated_nms_host(void const* boxes, void const* scores, int32_t dtype, int32_t batch,
    int32_t num_boxes, int32_t num_classes, float score_threshold, float iou_threshold, int32_t max_output_boxes,
    int32_t background_class, int32_t score_activation, int32_t class_agnostic, int32_t box_coding, int32_t top_k,
    int32_t* num_detections, void* out_boxes, void* out_scores, int32_t* out_classes)
{
    trtalign::NmsRequest r;
    if (!trtalign::makeNmsRequest(dtype, batch, num_boxes, num_classes, score_threshold, iou_threshold,
            max_output_boxes, background_class, score_activation, class_agnostic, box_coding, top_k, r))
    {
        return -1;
    }
    return trtalign::rotatedNmsHost(
        r.params, r.type, boxes, scores, num_detections, out_boxes, out_scores, out_classes);
}

} // extern "C"
