// IPluginV2DynamicExt front end of EfficientRotatedNMS_TRT (TensorRT 8.5 / 8.6). Compiled to nothing for 10+.
#include "rotated_nms_plugin_v2.h"

#if NV_TENSORRT_MAJOR < 10

#include "rotated_nms_kernels.cuh"

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
    return (index == 0 || index == 3) ? DataType::kINT32 : inputTypes[0];
}

IPluginV2DynamicExt* RotatedNmsPluginV2::clone() const noexcept
{
    try
    {
        auto* p = new RotatedNmsPluginV2(mParams);
        p->setPluginNamespace(mNamespace.c_str());
        return p;
    }
    catch (...)
    {
        return nullptr;
    }
}

DimsExprs RotatedNmsPluginV2::getOutputDimensions(
    int32_t outputIndex, DimsExprs const* inputs, int32_t /*nbInputs*/, IExprBuilder& exprBuilder) noexcept
{
    DimsExprs out;
    out.nbDims = outputIndex == 1 ? 3 : 2;
    out.d[0] = inputs[0].d[0]; // batch, dynamic or not
    out.d[1] = exprBuilder.constant(outputIndex == 0 ? 1 : mParams.maxOutputBoxes);
    if (outputIndex == 1)
    {
        out.d[2] = exprBuilder.constant(kRotatedBoxValues);
    }
    return out;
}

bool RotatedNmsPluginV2::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    DataType types[kRotatedNmsNbInputs + kRotatedNmsNbOutputs];
    TensorFormat formats[kRotatedNmsNbInputs + kRotatedNmsNbOutputs];
    if (nbInputs + nbOutputs != kRotatedNmsNbInputs + kRotatedNmsNbOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    for (int32_t i = 0; i <= pos; ++i)
    {
        types[i] = inOut[i].type;
        formats[i] = inOut[i].format;
    }
    return supportsRotatedNmsFormat(pos, types, formats, nbInputs, nbOutputs);
}

void RotatedNmsPluginV2::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs)
    {
        logRotatedNmsError("configurePlugin", "expected 2 inputs (boxes, scores) and 4 outputs");
        return;
    }
    std::string const msg = checkRotatedNmsInputDims(in[0].desc.dims, in[1].desc.dims);
    if (!msg.empty())
    {
        logRotatedNmsError("configurePlugin", msg);
    }
}

size_t RotatedNmsPluginV2::getWorkspaceSize(PluginTensorDesc const* inputs, int32_t nbInputs,
    PluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || inputs[1].dims.nbDims != 3)
    {
        return 0;
    }
    Dims const& s = inputs[1].dims;
    return rotatedNmsWorkspaceSize((int32_t) s.d[0], (int32_t) s.d[1], (int32_t) s.d[2]);
}

int32_t RotatedNmsPluginV2::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    NmsDataType type;
    if (!toNmsDataType(inputDesc[0].type, type))
    {
        logRotatedNmsError("enqueue", "boxes must be FP32 or FP16");
        return -1;
    }
    RotatedNmsParams p = mParams;
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

char const* RotatedNmsPluginCreatorV2::getPluginName() const noexcept
{
    return kRotatedNmsPluginName;
}

char const* RotatedNmsPluginCreatorV2::getPluginVersion() const noexcept
{
    return kRotatedNmsPluginVersion;
}

PluginFieldCollection const* RotatedNmsPluginCreatorV2::getFieldNames() noexcept
{
    return mFields.fieldNames();
}

IPluginV2* RotatedNmsPluginCreatorV2::createPlugin(char const* /*name*/, PluginFieldCollection const* fc) noexcept
{
    try
    {
        RotatedNmsParams p;
        std::string const msg = parseRotatedNmsFields(fc, p);
        if (!msg.empty())
        {
            logRotatedNmsError("createPlugin", msg);
            return nullptr;
        }
        auto* plugin = new RotatedNmsPluginV2(p);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

IPluginV2* RotatedNmsPluginCreatorV2::deserializePlugin(
    char const* /*name*/, void const* serialData, size_t serialLength) noexcept
{
    try
    {
        RotatedNmsParams p;
        if (!deserializeRotatedNmsParams(serialData, serialLength, p))
        {
            logRotatedNmsError("deserializePlugin", "serialized data is not an EfficientRotatedNMS_TRT v1 blob");
            return nullptr;
        }
        auto* plugin = new RotatedNmsPluginV2(p);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

void RotatedNmsPluginCreatorV2::setPluginNamespace(char const* ns) noexcept
{
    mNamespace = ns != nullptr ? ns : "";
}

char const* RotatedNmsPluginCreatorV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

// Static registration when the library is loaded (ctypes.CDLL(path, RTLD_GLOBAL), trtexec --staticPlugins).
// The front-end test harness defines TRTALIGN_NO_PLUGIN_REGISTRATION to run without libnvinfer.
#ifndef TRTALIGN_NO_PLUGIN_REGISTRATION
REGISTER_TENSORRT_PLUGIN(RotatedNmsPluginCreatorV2);
#endif

} // namespace trtalign

#endif // NV_TENSORRT_MAJOR < 10
