// Pieces shared by the TensorRT front ends of EfficientRotatedNMS_TRT (IPluginV3 for 10.x/11.x, IPluginV2DynamicExt
// for 8.5/8.6): the plugin's identity, its attributes (those of EfficientNMS_TRT) and their parsing, serialization,
// tensor checks, output shapes and types, workspace size and enqueue. Each front end only adapts its TensorRT
// interface to these. Needs the TensorRT headers (NvInferRuntime.h); the CUDA kernels are linked, not included.
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

//! Whether the tensor at ``pos`` of ``inOut`` (inputs 0 boxes, 1 scores; outputs 2..5) has a supported type and
//! format, given those before it; one overload per descriptor type (IPluginV2DynamicExt, IPluginV3).
bool supportsRotatedNmsFormat(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept;
bool supportsRotatedNmsFormat(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept;

//! Check the tensor counts (2 inputs, 4 outputs) and the input shapes [B,N,5], [B,N,C] (-1 accepted for unknown
//! dims): 0 when fine, else -1 after logging the reason under ``where``. One overload per descriptor type
//! (configurePlugin, onShapeChange).
int32_t checkRotatedNmsInputs(char const* where, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    int32_t nbOutputs) noexcept;
int32_t checkRotatedNmsInputs(
    char const* where, nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) noexcept;

//! Type of output ``index`` (num_detections, detection_boxes, detection_scores, detection_classes).
nvinfer1::DataType rotatedNmsOutputType(int32_t index, nvinfer1::DataType boxesType) noexcept;

//! Shape of output ``index`` for boxes of shape ``boxes`` ([B,1], [B,K,5], [B,K], [B,K]; B dynamic or not).
nvinfer1::DimsExprs rotatedNmsOutputShape(int32_t index, nvinfer1::DimsExprs const& boxes, int32_t maxOutputBoxes,
    nvinfer1::IExprBuilder& exprBuilder) noexcept;

//! Device workspace bytes for scores of shape ``scores`` [B,N,C] (0 when the rank is not 3).
size_t rotatedNmsWorkspaceBytes(nvinfer1::Dims const& scores) noexcept;

//! Run the kernels for the shapes and type in ``inputDesc``: 0, or -1 after logging the reason.
int32_t enqueueRotatedNms(RotatedNmsParams const& params, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept;

//! Report an error through TensorRT's logger-free channel (stderr), prefixed with the plugin name.
void logRotatedNmsError(char const* where, std::string const& message) noexcept;

//! What the creators of both front ends answer alike: name, version, attribute fields and namespace.
//! ``CreatorInterface``: nvinfer1::IPluginCreator (IPluginV2) or nvinfer1::IPluginCreatorV3One.
template <typename CreatorInterface>
class RotatedNmsCreatorBase : public CreatorInterface
{
public:
    char const* getPluginName() const noexcept override
    {
        return kRotatedNmsPluginName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kRotatedNmsPluginVersion;
    }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return mFields.fieldNames();
    }
    char const* getPluginNamespace() const noexcept override
    {
        return mNamespace.c_str();
    }

protected:
    RotatedNmsFields mFields;
    std::string mNamespace;
};

//! A new ``Plugin`` (a front end's plugin class) with these attributes in namespace ``ns``; null when allocation
//! fails (TensorRT's entry points must not throw).
template <typename Plugin>
Plugin* newRotatedNmsPlugin(RotatedNmsParams const& params, std::string const& ns) noexcept
{
    try
    {
        auto* plugin = new Plugin(params);
        plugin->setPluginNamespace(ns.c_str());
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

//! A new ``Plugin`` from a creator's field collection; null (after logging the reason) when the attributes are invalid.
template <typename Plugin>
Plugin* createRotatedNmsPlugin(nvinfer1::PluginFieldCollection const* fc, std::string const& ns) noexcept
{
    RotatedNmsParams p;
    std::string msg;
    try
    {
        msg = parseRotatedNmsFields(fc, p);
    }
    catch (...)
    {
        return nullptr;
    }
    if (!msg.empty())
    {
        logRotatedNmsError("createPlugin", msg);
        return nullptr;
    }
    return newRotatedNmsPlugin<Plugin>(p, ns);
}

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_PLUGIN_COMMON_H
