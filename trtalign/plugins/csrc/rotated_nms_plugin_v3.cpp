// IPluginV3 front end of EfficientRotatedNMS_TRT (TensorRT 10.x / 11.x). Compiled to nothing for older headers.
#include "rotated_nms_plugin_v3.h"

#if NV_TENSORRT_MAJOR >= 10

namespace trtalign
{
using namespace nvinfer1;

RotatedNmsPluginV3::RotatedNmsPluginV3(RotatedNmsParams const& params)
    : mParams(params)
{
}

IPluginCapability* RotatedNmsPluginV3::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    default: return nullptr;
    }
}

IPluginV3* RotatedNmsPluginV3::clone() noexcept
{
    return newRotatedNmsPlugin<RotatedNmsPluginV3>(mParams, mNamespace);
}

char const* RotatedNmsPluginV3::getPluginName() const noexcept
{
    return kRotatedNmsPluginName;
}

char const* RotatedNmsPluginV3::getPluginVersion() const noexcept
{
    return kRotatedNmsPluginVersion;
}

char const* RotatedNmsPluginV3::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

void RotatedNmsPluginV3::setPluginNamespace(char const* ns) noexcept
{
    mNamespace = ns != nullptr ? ns : "";
}

int32_t RotatedNmsPluginV3::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return checkRotatedNmsInputs("configurePlugin", in, nbInputs, nbOutputs);
}

int32_t RotatedNmsPluginV3::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs)
    {
        return -1;
    }
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        outputTypes[i] = rotatedNmsOutputType(i, inputTypes[0]);
    }
    return 0;
}

int32_t RotatedNmsPluginV3::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs || inputs[0].nbDims != 3)
    {
        return -1;
    }
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        outputs[i] = rotatedNmsOutputShape(i, inputs[0], mParams.maxOutputBoxes, exprBuilder);
    }
    return 0;
}

bool RotatedNmsPluginV3::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return supportsRotatedNmsFormat(pos, inOut, nbInputs, nbOutputs);
}

int32_t RotatedNmsPluginV3::getNbOutputs() const noexcept
{
    return kRotatedNmsNbOutputs;
}

size_t RotatedNmsPluginV3::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    // sized for the largest shape of the optimization profile
    return nbInputs == kRotatedNmsNbInputs ? rotatedNmsWorkspaceBytes(inputs[1].max) : 0;
}

int32_t RotatedNmsPluginV3::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return checkRotatedNmsInputs("onShapeChange", in, nbInputs, nbOutputs);
}

int32_t RotatedNmsPluginV3::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return enqueueRotatedNms(mParams, inputDesc, inputs, outputs, workspace, stream);
}

IPluginV3* RotatedNmsPluginV3::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* RotatedNmsPluginV3::getFieldsToSerialize() noexcept
{
    return mFields.fieldsOf(mParams);
}

IPluginV3* RotatedNmsPluginCreatorV3::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    // Build and runtime phases both receive the attributes (at runtime: those of getFieldsToSerialize()).
    return createRotatedNmsPlugin<RotatedNmsPluginV3>(fc, mNamespace);
}

// Static registration when the library is loaded (ctypes.CDLL(path, RTLD_GLOBAL), trtexec --staticPlugins).
// The front-end test harness defines TRTALIGN_NO_PLUGIN_REGISTRATION to run without libnvinfer.
#ifndef TRTALIGN_NO_PLUGIN_REGISTRATION
REGISTER_TENSORRT_PLUGIN(RotatedNmsPluginCreatorV3);
#endif

} // namespace trtalign

#endif // NV_TENSORRT_MAJOR >= 10
