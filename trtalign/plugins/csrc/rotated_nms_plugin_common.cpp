// Attributes, serialization and format checks shared by the TensorRT front ends. See rotated_nms_plugin_common.h.
#include "rotated_nms_plugin_common.h"

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
} // namespace

RotatedNmsFields::RotatedNmsFields()
{
    mNameList = {
        PluginField("score_threshold", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_threshold", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("max_output_boxes", nullptr, PluginFieldType::kINT32, 1),
        PluginField("background_class", nullptr, PluginFieldType::kINT32, 1),
        PluginField("score_activation", nullptr, PluginFieldType::kINT32, 1),
        PluginField("class_agnostic", nullptr, PluginFieldType::kINT32, 1),
        PluginField("box_coding", nullptr, PluginFieldType::kINT32, 1),
    };
    mNames.nbFields = (int32_t) mNameList.size();
    mNames.fields = mNameList.data();
}

nvinfer1::PluginFieldCollection const* RotatedNmsFields::fieldsOf(RotatedNmsParams const& p) noexcept
{
    mValues = p;
    mValueList = {
        PluginField("score_threshold", &mValues.scoreThreshold, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_threshold", &mValues.iouThreshold, PluginFieldType::kFLOAT32, 1),
        PluginField("max_output_boxes", &mValues.maxOutputBoxes, PluginFieldType::kINT32, 1),
        PluginField("background_class", &mValues.backgroundClass, PluginFieldType::kINT32, 1),
        PluginField("score_activation", &mValues.scoreActivation, PluginFieldType::kINT32, 1),
        PluginField("class_agnostic", &mValues.classAgnostic, PluginFieldType::kINT32, 1),
        PluginField("box_coding", &mValues.boxCoding, PluginFieldType::kINT32, 1),
    };
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
        if (f.name == nullptr)
        {
            continue;
        }
        std::string const name = f.name;
        bool ok = true;
        if (name == "score_threshold")
        {
            ok = readFloat(f, p.scoreThreshold);
        }
        else if (name == "iou_threshold")
        {
            ok = readFloat(f, p.iouThreshold);
        }
        else if (name == "max_output_boxes")
        {
            ok = readInt(f, p.maxOutputBoxes);
        }
        else if (name == "background_class")
        {
            ok = readInt(f, p.backgroundClass);
        }
        else if (name == "score_activation")
        {
            ok = readInt(f, p.scoreActivation);
        }
        else if (name == "class_agnostic")
        {
            ok = readInt(f, p.classAgnostic);
        }
        else if (name == "box_coding")
        {
            ok = readInt(f, p.boxCoding);
        }
        if (!ok)
        {
            return "attribute '" + name + "' has an unexpected type or no data";
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

bool toNmsDataType(nvinfer1::DataType t, NmsDataType& out) noexcept
{
    if (t == nvinfer1::DataType::kFLOAT)
    {
        out = NmsDataType::kFLOAT32;
        return true;
    }
    if (t == nvinfer1::DataType::kHALF)
    {
        out = NmsDataType::kFLOAT16;
        return true;
    }
    return false;
}

bool supportsRotatedNmsFormat(int32_t pos, nvinfer1::DataType const* types, nvinfer1::TensorFormat const* formats,
    int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
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

std::string checkRotatedNmsInputDims(nvinfer1::Dims const& boxes, nvinfer1::Dims const& scores)
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

void logRotatedNmsError(char const* where, std::string const& message) noexcept
{
    std::fprintf(stderr, "[%s] %s: %s\n", kRotatedNmsPluginName, where, message.c_str());
}

} // namespace trtalign
