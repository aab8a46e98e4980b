// Pieces shared by the TensorRT front ends of EfficientRotatedNMS_TRT (IPluginV3 for 10.x/11.x, IPluginV2DynamicExt
// for 8.5/8.6): the plugin's identity, its attributes (those of EfficientNMS_TRT) and their parsing, serialization
// and tensor checks. Needs the TensorRT headers (NvInferRuntime.h), not the CUDA kernels.
#ifndef TRTALIGN_ROTATED_NMS_PLUGIN_COMMON_H
#define TRTALIGN_ROTATED_NMS_PLUGIN_COMMON_H

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <stddef.h>
#include <string>
#include <vector>

#include "rotated_nms_common.h"

namespace trtalign
{

constexpr char const* kRotatedNmsPluginName = "EfficientRotatedNMS_TRT";
constexpr char const* kRotatedNmsPluginVersion = "1";
constexpr int32_t kRotatedNmsNbInputs = 2;
constexpr int32_t kRotatedNmsNbOutputs = 4;

//! Attribute names, types and defaults, in one place (creator field list, parsing and serialization use it).
class RotatedNmsFields
{
public:
    RotatedNmsFields();
    //! The creator's field list (names and types; data null).
    nvinfer1::PluginFieldCollection const* fieldNames() const noexcept
    {
        return &mNames;
    }
    //! A field collection holding ``p``'s attribute values (valid while this object and its last call live).
    nvinfer1::PluginFieldCollection const* fieldsOf(RotatedNmsParams const& p) noexcept;

private:
    std::vector<nvinfer1::PluginField> mNameList;
    nvinfer1::PluginFieldCollection mNames{};
    RotatedNmsParams mValues{};
    std::vector<nvinfer1::PluginField> mValueList;
    nvinfer1::PluginFieldCollection mValuesFc{};
};

//! Fill ``p`` from a field collection (unknown fields are ignored, like TensorRT's EfficientNMS creator; missing ones
//! keep their defaults). Returns "" when valid, else the reason.
std::string parseRotatedNmsFields(nvinfer1::PluginFieldCollection const* fc, RotatedNmsParams& p);

//! Serialized attribute bytes (a fixed little header + the attribute values) and back.
size_t rotatedNmsSerializedSize() noexcept;
void serializeRotatedNmsParams(RotatedNmsParams const& p, void* buffer) noexcept;
bool deserializeRotatedNmsParams(void const* data, size_t length, RotatedNmsParams& p) noexcept;

//! Tensor data type -> kernel element type; false for types other than FP32 / FP16.
bool toNmsDataType(nvinfer1::DataType t, NmsDataType& out) noexcept;

//! Whether (pos, type, format) is a supported I/O combination (inputs 0 boxes, 1 scores; outputs 2..5).
bool supportsRotatedNmsFormat(int32_t pos, nvinfer1::DataType const* types, nvinfer1::TensorFormat const* formats,
    int32_t nbInputs, int32_t nbOutputs) noexcept;

//! Check input shapes [B,N,5] and [B,N,C] (static dims, -1 accepted for unknown); "" when fine.
std::string checkRotatedNmsInputDims(nvinfer1::Dims const& boxes, nvinfer1::Dims const& scores);

//! Report an error through TensorRT's logger-free channel (stderr), prefixed with the plugin name.
void logRotatedNmsError(char const* where, std::string const& message) noexcept;

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_PLUGIN_COMMON_H
