// IPluginV2DynamicExt front end of EfficientRotatedNMS_TRT (TensorRT 8.5 / 8.6). Compiled to nothing for 10+.
#include "rotated_nms_plugin_v2.h"

#if NV_TENSORRT_MAJOR < 10

namespace trtalign
{
using namespace nvinfer1;

RotatedNmsPluginV2::RotatedNmsPluginV2(RotatedNmsParams const& params)
    : mParams(params)
{
}

char const* RotatedNmsPluginV2::getPluginType() const noexcept
{
    return kRotatedNmsPluginName;
}

char const* RotatedNmsPluginV2::getPluginVersion() const noexcept
{
    return kRotatedNmsPluginVersion;
}

int32_t RotatedNmsPluginV2::getNbOutputs() const noexcept
{
    return kRotatedNmsNbOutputs;
}

int32_t RotatedNmsPluginV2::initialize() noexcept
{
    return 0;
}

void RotatedNmsPluginV2::terminate() noexcept {}

size_t RotatedNmsPluginV2::getSerializationSize() const noexcept
{
    return rotatedNmsSerializedSize();
}

void RotatedNmsPluginV2::serialize(void* buffer) const noexcept
{
    serializeRotatedNmsParams(mParams, buffer);
}

void RotatedNmsPluginV2::destroy() noexcept
{
    delete this;
}

void RotatedNmsPluginV2::setPluginNamespace(char const* ns) noexcept
{
    mNamespace = ns != nullptr ? ns : "";
}

char const* RotatedNmsPluginV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

DataType RotatedNmsPluginV2::getOutputDataType(
    int32_t index, DataType const* inputTypes, int32_t /*nbInputs*/) const noexcept
{
    return rotatedNmsOutputType(index, inputTypes[0]);
}

IPluginV2DynamicExt* RotatedNmsPluginV2::clone() const noexcept
{
    return newRotatedNmsPlugin<RotatedNmsPluginV2>(mParams, mNamespace);
}

DimsExprs RotatedNmsPluginV2::getOutputDimensions(
    int32_t outputIndex, DimsExprs const* inputs, int32_t /*nbInputs*/, IExprBuilder& exprBuilder) noexcept
{
    return rotatedNmsOutputShape(outputIndex, inputs[0], mParams.maxOutputBoxes, exprBuilder);
}

bool RotatedNmsPluginV2::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return supportsRotatedNmsFormat(pos, inOut, nbInputs, nbOutputs);
}

void RotatedNmsPluginV2::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    checkRotatedNmsInputs("configurePlugin", in, nbInputs, nbOutputs); // IPluginV2DynamicExt cannot refuse here
}

size_t RotatedNmsPluginV2::getWorkspaceSize(PluginTensorDesc const* inputs, int32_t nbInputs,
    PluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return nbInputs == kRotatedNmsNbInputs ? rotatedNmsWorkspaceBytes(inputs[1].dims) : 0;
}

int32_t RotatedNmsPluginV2::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return enqueueRotatedNms(mParams, inputDesc, inputs, outputs, workspace, stream);
}

IPluginV2* RotatedNmsPluginCreatorV2::createPlugin(char const* /*name*/, PluginFieldCollection const* fc) noexcept
{
    return createRotatedNmsPlugin<RotatedNmsPluginV2>(fc, mNamespace);
}

IPluginV2* RotatedNmsPluginCreatorV2::deserializePlugin(
    char const* /*name*/, void const* serialData, size_t serialLength) noexcept
{
    RotatedNmsParams p;
    if (!deserializeRotatedNmsParams(serialData, serialLength, p))
    {
        logRotatedNmsError("deserializePlugin", "serialized data is not an EfficientRotatedNMS_TRT v1 blob");
        return nullptr;
    }
    return newRotatedNmsPlugin<RotatedNmsPluginV2>(p, mNamespace);
}

void RotatedNmsPluginCreatorV2::setPluginNamespace(char const* ns) noexcept
{
    mNamespace = ns != nullptr ? ns : "";
}

// Static registration when the library is loaded (ctypes.CDLL(path, RTLD_GLOBAL), trtexec --staticPlugins).
// The front-end test harness defines TRTALIGN_NO_PLUGIN_REGISTRATION to run without libnvinfer.
#ifndef TRTALIGN_NO_PLUGIN_REGISTRATION
REGISTER_TENSORRT_PLUGIN(RotatedNmsPluginCreatorV2);
#endif

} // namespace trtalign

#endif // NV_TENSORRT_MAJOR < 10
