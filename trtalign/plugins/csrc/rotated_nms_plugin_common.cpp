// Logic shared by the TensorRT front ends. See rotated_nms_plugin_common.h.
#include "rotated_nms_plugin_common.h"

#include "rotated_nms_kernels.cuh"

#include <cstdio>
#include <cstring>

namespace trtalign
{
namespace
{
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;

constexpr uint32_t kSerialMagic = 0x524E4D53u; // "RNMS"
constexpr uint32_t kSerialVersion = 1u;

struct SerialBlob
{
    uint32_t magic;
    uint32_t version;
    float scoreThreshold;
    float iouThreshold;
    int32_t maxOutputBoxes;
    int32_t backgroundClass;
    int32_t scoreActivation;
    int32_t classAgnostic;
    int32_t boxCoding;
    int32_t topK;
};

bool readInt(PluginField const& f, int32_t& out)
{
    if (f.data == nullptr || f.length < 1)
    {
        return false;
    }
    switch (f.type)
    {
    case PluginFieldType::kINT32: out = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT16: out = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT8: out = *static_cast<int8_t const*>(f.data); return true;
    default: return false;
    }
}

bool readFloat(PluginField const& f, float& out)
{
    if (f.data == nullptr || f.length < 1)
    {
        return false;
    }
    switch (f.type)
    {
    case PluginFieldType::kFLOAT32: out = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: out = (float) *static_cast<double const*>(f.data); return true;
    default: return false;
    }
}

// The attributes in creator-field order: the float ones, then the int32 ones.
struct FloatAttribute
{
    char const* name;
    float RotatedNmsParams::*member;
};
struct IntAttribute
{
    char const* name;
    int32_t RotatedNmsParams::*member;
};
constexpr FloatAttribute kFloatAttributes[] = {
    {"score_threshold", &RotatedNmsParams::scoreThreshold},
    {"iou_threshold", &RotatedNmsParams::iouThreshold},
};
constexpr IntAttribute kIntAttributes[] = {
    {"max_output_boxes", &RotatedNmsParams::maxOutputBoxes},
    {"background_class", &RotatedNmsParams::backgroundClass},
    {"score_activation", &RotatedNmsParams::scoreActivation},
    {"class_agnostic", &RotatedNmsParams::classAgnostic},
    {"box_coding", &RotatedNmsParams::boxCoding},
};

//! The attribute fields, pointing into ``values`` (null: names and types only).
std::vector<PluginField> attributeFields(RotatedNmsParams* values)
{
    std::vector<PluginField> fields;
    for (FloatAttribute const& a : kFloatAttributes)
    {
        fields.emplace_back(a.name, values ? &(values->*a.member) : nullptr, PluginFieldType::kFLOAT32, 1);
    }
    for (IntAttribute const& a : kIntAttributes)
    {
        fields.emplace_back(a.name, values ? &(values->*a.member) : nullptr, PluginFieldType::kINT32, 1);
    }
    return fields;
}

//! Read field ``f`` into ``p`` when it names an attribute; false when it does but its type or data is unusable.
bool readAttribute(PluginField const& f, RotatedNmsParams& p)
{
    for (FloatAttribute const& a : kFloatAttributes)
    {
        if (std::strcmp(f.name, a.name) == 0)
        {
            return readFloat(f, p.*a.member);
        }
    }
    for (IntAttribute const& a : kIntAttributes)
    {
        if (std::strcmp(f.name, a.name) == 0)
        {
            return readInt(f, p.*a.member);
        }
    }
    return true; // unknown attributes are ignored
}

template <typename Desc>
nvinfer1::PluginTensorDesc const& tensorDesc(Desc const& d) noexcept;
template <>
nvinfer1::PluginTensorDesc const& tensorDesc(nvinfer1::PluginTensorDesc const& d) noexcept
{
    return d;
}
template <>
nvinfer1::PluginTensorDesc const& tensorDesc(nvinfer1::DynamicPluginTensorDesc const& d) noexcept
{
    return d.desc;
}

//! Whether (pos, type, format) is a supported I/O combination, ``types`` and ``formats`` known up to ``pos``.
bool supportsFormat(int32_t pos, nvinfer1::DataType const* types, nvinfer1::TensorFormat const* formats) noexcept
{
    if (formats[pos] != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    nvinfer1::DataType const t = types[pos];
    switch (pos)
    {
    case 0: return t == nvinfer1::DataType::kFLOAT || t == nvinfer1::DataType::kHALF; // boxes
    case 1:                                                                             // scores: same as boxes
    case 3:                                                                             // detection_boxes
    case 4: return t == types[0];                                                       // detection_scores
    default: return t == nvinfer1::DataType::kINT32; // num_detections, detection_classes
    }
}

template <typename Desc>
bool supportsFormatOf(int32_t pos, Desc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    nvinfer1::DataType types[kRotatedNmsNbInputs + kRotatedNmsNbOutputs];
    nvinfer1::TensorFormat formats[kRotatedNmsNbInputs + kRotatedNmsNbOutputs];
    for (int32_t i = 0; i <= pos; ++i)
    {
        types[i] = tensorDesc(inOut[i]).type;
        formats[i] = tensorDesc(inOut[i]).format;
    }
    return supportsFormat(pos, types, formats);
}

//! Check input shapes [B,N,5] and [B,N,C] (static dims, -1 accepted for unknown); "" when fine.
std::string checkInputDims(nvinfer1::Dims const& boxes, nvinfer1::Dims const& scores)
{
    if (boxes.nbDims != 3 || scores.nbDims != 3)
    {
        return "expected boxes [B, N, 5] and scores [B, N, C] (rank 3), got ranks " + std::to_string(boxes.nbDims)
            + " and " + std::to_string(scores.nbDims);
    }
    if (boxes.d[2] != -1 && boxes.d[2] != kRotatedBoxValues)
    {
        return "boxes last dimension must be 5 (cx, cy, w, h, angle), got " + std::to_string(boxes.d[2]);
    }
    for (int i = 0; i < 2; ++i)
    {
        if (boxes.d[i] != -1 && scores.d[i] != -1 && boxes.d[i] != scores.d[i])
        {
            return "boxes and scores disagree in dimension " + std::to_string(i) + ": " + std::to_string(boxes.d[i])
                + " vs " + std::to_string(scores.d[i]);
        }
    }
    return std::string();
}

template <typename Desc>
int32_t checkInputsOf(char const* where, Desc const* in, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        std::string const msg = nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs
            ? std::string("expected 2 inputs (boxes, scores) and 4 outputs")
            : checkInputDims(tensorDesc(in[0]).dims, tensorDesc(in[1]).dims);
        if (msg.empty())
        {
            return 0;
        }
        logRotatedNmsError(where, msg);
    }
    catch (...)
    {
    }
    return -1;
}
} // namespace

RotatedNmsFields::RotatedNmsFields()
    : mNameList(attributeFields(nullptr))
{
    mNames.nbFields = (int32_t) mNameList.size();
    mNames.fields = mNameList.data();
}

nvinfer1::PluginFieldCollection const* RotatedNmsFields::fieldsOf(RotatedNmsParams const& p) noexcept
{
    mValues = p;
    mValueList = attributeFields(&mValues);
    mValuesFc.nbFields = (int32_t) mValueList.size();
    mValuesFc.fields = mValueList.data();
    return &mValuesFc;
}

std::string parseRotatedNmsFields(nvinfer1::PluginFieldCollection const* fc, RotatedNmsParams& p)
{
    if (fc == nullptr)
    {
        return "null field collection";
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name != nullptr && !readAttribute(f, p))
        {
            return "attribute '" + std::string(f.name) + "' has an unexpected type or no data";
        }
    }
    char const* msg = validateRotatedNmsParams(p);
    return msg == nullptr ? std::string() : std::string(msg);
}

size_t rotatedNmsSerializedSize() noexcept
{
    return sizeof(SerialBlob);
}

void serializeRotatedNmsParams(RotatedNmsParams const& p, void* buffer) noexcept
{
    SerialBlob const blob{kSerialMagic, kSerialVersion, p.scoreThreshold, p.iouThreshold, p.maxOutputBoxes,
        p.backgroundClass, p.scoreActivation, p.classAgnostic, p.boxCoding, p.topK};
    std::memcpy(buffer, &blob, sizeof(blob));
}

bool deserializeRotatedNmsParams(void const* data, size_t length, RotatedNmsParams& p) noexcept
{
    SerialBlob blob;
    if (data == nullptr || length != sizeof(blob))
    {
        return false;
    }
    std::memcpy(&blob, data, sizeof(blob));
    if (blob.magic != kSerialMagic || blob.version != kSerialVersion)
    {
        return false;
    }
    p.scoreThreshold = blob.scoreThreshold;
    p.iouThreshold = blob.iouThreshold;
    p.maxOutputBoxes = blob.maxOutputBoxes;
    p.backgroundClass = blob.backgroundClass;
    p.scoreActivation = blob.scoreActivation;
    p.classAgnostic = blob.classAgnostic;
    p.boxCoding = blob.boxCoding;
    p.topK = blob.topK;
    return validateRotatedNmsParams(p) == nullptr;
}

bool supportsRotatedNmsFormat(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return supportsFormatOf(pos, inOut, nbInputs, nbOutputs);
}

bool supportsRotatedNmsFormat(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return supportsFormatOf(pos, inOut, nbInputs, nbOutputs);
}

int32_t checkRotatedNmsInputs(char const* where, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    int32_t nbOutputs) noexcept
{
    return checkInputsOf(where, in, nbInputs, nbOutputs);
}

int32_t checkRotatedNmsInputs(
    char const* where, nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return checkInputsOf(where, in, nbInputs, nbOutputs);
}

nvinfer1::DataType rotatedNmsOutputType(int32_t index, nvinfer1::DataType boxesType) noexcept
{
    return (index == 0 || index == 3) ? nvinfer1::DataType::kINT32 : boxesType;
}

nvinfer1::DimsExprs rotatedNmsOutputShape(int32_t index, nvinfer1::DimsExprs const& boxes, int32_t maxOutputBoxes,
    nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    nvinfer1::DimsExprs out;
    out.nbDims = index == 1 ? 3 : 2;
    out.d[0] = boxes.d[0]; // batch, dynamic or not
    out.d[1] = exprBuilder.constant(index == 0 ? 1 : maxOutputBoxes);
    if (index == 1)
    {
        out.d[2] = exprBuilder.constant(kRotatedBoxValues);
    }
    return out;
}

size_t rotatedNmsWorkspaceBytes(nvinfer1::Dims const& scores) noexcept
{
    if (scores.nbDims != 3)
    {
        return 0;
    }
    return rotatedNmsWorkspaceSize((int32_t) scores.d[0], (int32_t) scores.d[1], (int32_t) scores.d[2]);
}

int32_t enqueueRotatedNms(RotatedNmsParams const& params, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    NmsDataType type;
    if (inputDesc[0].type == nvinfer1::DataType::kFLOAT)
    {
        type = NmsDataType::kFLOAT32;
    }
    else if (inputDesc[0].type == nvinfer1::DataType::kHALF)
    {
        type = NmsDataType::kFLOAT16;
    }
    else
    {
        logRotatedNmsError("enqueue", "boxes must be FP32 or FP16");
        return -1;
    }
    RotatedNmsParams p = params;
    p.batchSize = (int32_t) inputDesc[1].dims.d[0];
    p.numBoxes = (int32_t) inputDesc[1].dims.d[1];
    p.numClasses = (int32_t) inputDesc[1].dims.d[2];
    size_t const wsBytes = rotatedNmsWorkspaceSize(p.batchSize, p.numBoxes, p.numClasses);
    cudaError_t const err = rotatedNmsLaunch(p, type, inputs[0], inputs[1], static_cast<int32_t*>(outputs[0]),
        outputs[1], outputs[2], static_cast<int32_t*>(outputs[3]), workspace, wsBytes, stream);
    if (err != cudaSuccess)
    {
        logRotatedNmsError("enqueue", cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

void logRotatedNmsError(char const* where, std::string const& message) noexcept
{
    std::fprintf(stderr, "[%s] %s: %s\n", kRotatedNmsPluginName, where, message.c_str());
}

} // namespace trtalign
