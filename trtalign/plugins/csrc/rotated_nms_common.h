// Parameters and small helpers shared by the host NMS, the CUDA kernels and the TensorRT plugin front ends.
//
// Semantics: those of TensorRT's EfficientNMS_TRT as reproduced by trtalign.plugins.reference.nms (which cites the
// TensorRT sources), with rotated boxes. Per image, independently:
//   1. candidates are (box, class) pairs, in every mode: element e = box * C + class is a candidate iff its raw score
//      >= the candidate threshold and class != background_class. The candidate threshold is score_threshold, or
//      with score_activation logf(t / (1 - t)) in FP32 (-32768 when t <= 0) compared with the raw logits; with FP16
//      scores that threshold is rounded to FP16 (TensorRT's (T) cast in EfficientNMSFilter);
//   2. candidates are ordered by raw score descending, equal scores keep the lower element index first; only the
//      first topK (5000, TensorRT's numSelectedBoxes on every current GPU) enter NMS;
//   3. greedy NMS in that order: a candidate not yet suppressed is kept (at most max_output_boxes, then stop) and
//      suppresses every later candidate of the same class (any class when class_agnostic) with IoU >= iou_threshold;
//   4. outputs: num_detections [B,1] int32, detection_boxes [B,K,5] (the input boxes unchanged: cx,cy,w,h,angle),
//      detection_scores [B,K] (sigmoid of the raw score when score_activation), detection_classes [B,K] int32,
//      K = max_output_boxes, the rest zero. box_coding is accepted and ignored (boxes are always centre-size-angle).
// IoU and areas are always computed in FP32 from the (possibly FP16) input boxes; a side <= 0 means area 0.
#ifndef TRTALIGN_ROTATED_NMS_COMMON_H
#define TRTALIGN_ROTATED_NMS_COMMON_H

#include <math.h>
#include <stdint.h>

#include "rotated_geometry.h"

namespace trtalign
{

//! Largest top-k supported (TensorRT's EfficientNMS: 4096 in its parameters, 5000 after initialize() on GPUs with
//! 64K registers per block, 2000 on TX1/TX2). The default is 5000, like TensorRT on current GPUs.
constexpr int kRotatedNmsMaxTopK = 5000;
//! Values per rotated box.
constexpr int kRotatedBoxValues = 5;

//! Element type of the boxes/scores inputs and of the box/score outputs.
enum class NmsDataType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

//! The attributes of EfficientRotatedNMS_TRT plus the tensor sizes of one call.
struct RotatedNmsParams
{
    float scoreThreshold = 0.25F;
    float iouThreshold = 0.45F;
    int32_t maxOutputBoxes = 100;
    int32_t backgroundClass = -1;
    int32_t scoreActivation = 0;
    int32_t classAgnostic = 0;
    int32_t boxCoding = 1;
    int32_t topK = kRotatedNmsMaxTopK;
    //! raw-score threshold actually compared (set by finalizeRotatedNmsParams from the attributes)
    float candidateThreshold = 0.25F;
    // tensor sizes (set per call)
    int32_t batchSize = 1;
    int32_t numBoxes = 0;
    int32_t numClasses = 1;
};

//! IEEE binary16 bits -> float, exact (host and device, no intrinsics, so host and GPU agree bit for bit).
TRTALIGN_HD float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1Fu)
    {
        bits = sign | 0x7F800000u | (man << 13); // inf / nan
    }
    else if (exp != 0)
    {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    else if (man == 0)
    {
        bits = sign; // +-0
    }
    else
    {
        // subnormal: normalise
        int e = -1;
        do
        {
            ++e;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t) (112 - e) << 23) | ((man & 0x3FFu) << 13);
    }
    union
    {
        uint32_t u;
        float f;
    } cvt;
    cvt.u = bits;
    return cvt.f;
}

//! float -> IEEE binary16 bits, round to nearest even (host and device).
TRTALIGN_HD uint16_t floatToHalfBits(float f)
{
    union
    {
        float f;
        uint32_t u;
    } cvt;
    cvt.f = f;
    uint32_t const x = cvt.u;
    uint16_t const sign = (uint16_t) ((x >> 16) & 0x8000u);
    uint32_t const absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u)
    {
        return (uint16_t) (sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u)); // inf / nan
    }
    if (absx >= 0x477FF000u)
    {
        return (uint16_t) (sign | 0x7C00u); // overflow to inf (>= 65520)
    }
    if (absx < 0x33000001u)
    {
        return sign; // underflow to zero
    }
    int const exp = (int) (absx >> 23) - 127;
    uint32_t man = (absx & 0x7FFFFFu) | 0x800000u;
    int shift;
    uint32_t hexp;
    if (exp < -14)
    {
        shift = 13 + (-14 - exp); // subnormal
        hexp = 0;
    }
    else
    {
        shift = 13;
        hexp = (uint32_t) (exp + 15);
        man &= 0x7FFFFFu;
    }
    uint32_t const rest = man & ((1u << shift) - 1u);
    uint32_t const half = 1u << (shift - 1);
    uint32_t m = man >> shift;
    uint32_t out = (hexp << 10) + m;
    if (rest > half || (rest == half && (m & 1u)))
    {
        out += 1; // may carry into the exponent, which is the correct rounding
    }
    return (uint16_t) (sign | out);
}

//! Load element i of a float32 or float16 buffer as float.
TRTALIGN_HD float loadAsFloat(void const* data, NmsDataType type, int64_t i)
{
    if (type == NmsDataType::kFLOAT16)
    {
        return halfBitsToFloat(static_cast<uint16_t const*>(data)[i]);
    }
    return static_cast<float const*>(data)[i];
}

//! Store a float into element i of a float32 or float16 buffer.
TRTALIGN_HD void storeFromFloat(void* data, NmsDataType type, int64_t i, float v)
{
    if (type == NmsDataType::kFLOAT16)
    {
        static_cast<uint16_t*>(data)[i] = floatToHalfBits(v);
    }
    else
    {
        static_cast<float*>(data)[i] = v;
    }
}

//! The logistic function in FP32, written out so host and device give the same value.
TRTALIGN_HD float sigmoidF32(float x)
{
    return 1.0F / (1.0F + expf(-x));
}

//! Whether a raw score passes the candidate threshold (NaN never passes).
TRTALIGN_HD bool scorePasses(float raw, RotatedNmsParams const& p)
{
    return raw >= p.candidateThreshold;
}

//! Compute the derived fields (candidateThreshold) from the attributes; call after setting them. With FP16 scores the
//! threshold (the logit taken in FP32 first when scoreActivation) is rounded to FP16, as TensorRT's EfficientNMS
//! compares ``gte_mp(score, (T) param.scoreThreshold)``: with threshold 0.45 an FP16 score of 0.449951171875 passes.
inline void finalizeRotatedNmsParams(RotatedNmsParams& p, NmsDataType type)
{
    float const t = p.scoreThreshold;
    if (!p.scoreActivation)
    {
        p.candidateThreshold = t;
    }
    else if (t <= 0.0F)
    {
        p.candidateThreshold = -32768.0F;
    }
    else
    {
        p.candidateThreshold = logf(t / (1.0F - t));
    }
    if (type == NmsDataType::kFLOAT16)
    {
        p.candidateThreshold = halfBitsToFloat(floatToHalfBits(p.candidateThreshold));
    }
}

//! Read box ``box`` of image ``image`` from a [B, N, 5] buffer as a float rotated box.
TRTALIGN_HD RotatedBox<float> loadRotatedBox(void const* boxes, NmsDataType type, int64_t image, int64_t box,
    int32_t numBoxes)
{
    int64_t const base = (image * numBoxes + box) * kRotatedBoxValues;
    RotatedBox<float> b;
    b.cx = loadAsFloat(boxes, type, base + 0);
    b.cy = loadAsFloat(boxes, type, base + 1);
    b.w = loadAsFloat(boxes, type, base + 2);
    b.h = loadAsFloat(boxes, type, base + 3);
    b.angle = loadAsFloat(boxes, type, base + 4);
    return b;
}

//! Validate parameters; returns nullptr when fine, else a static message.
inline char const* validateRotatedNmsParams(RotatedNmsParams const& p)
{
    if (!(p.scoreThreshold >= 0.0F))
    {
        return "score_threshold must be >= 0";
    }
    if (!(p.iouThreshold > 0.0F))
    {
        return "iou_threshold must be > 0";
    }
    if (p.maxOutputBoxes < 1)
    {
        return "max_output_boxes must be >= 1";
    }
    if (p.scoreActivation != 0 && p.scoreActivation != 1)
    {
        return "score_activation must be 0 or 1";
    }
    if (p.classAgnostic != 0 && p.classAgnostic != 1)
    {
        return "class_agnostic must be 0 or 1";
    }
    if (p.boxCoding != 0 && p.boxCoding != 1)
    {
        return "box_coding must be 0 or 1";
    }
    if (p.topK < 1 || p.topK > kRotatedNmsMaxTopK)
    {
        return "top_k must be in [1, 5000]";
    }
    if (p.batchSize < 0 || p.numBoxes < 0 || p.numClasses < 1)
    {
        return "tensor sizes must be batch >= 0, boxes >= 0, classes >= 1";
    }
    return nullptr;
}

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_COMMON_H
