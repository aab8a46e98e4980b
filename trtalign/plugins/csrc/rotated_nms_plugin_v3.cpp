// IPluginV3 front end of EfficientRotatedNMS_TRT (TensorRT 10.x / 11.x). Compiled to nothing for older headers.
#include "rotated_nms_plugin_v3.h"

#if NV_TENSORRT_MAJOR >= 10

#include "rotated_nms_kernels.cuh"

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
    try
    {
        auto* p = new RotatedNmsPluginV3(mParams);
        p->setPluginNamespace(mNamespace.c_str());
        return p;
    }
    catch (...)
    {
        return nullptr;
    }
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
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs)
    {
        logRotatedNmsError("configurePlugin", "expected 2 inputs (boxes, scores) and 4 outputs");
        return -1;
    }
    std::string const msg = checkRotatedNmsInputDims(in[0].desc.dims, in[1].desc.dims);
    if (!msg.empty())
    {
        logRotatedNmsError("configurePlugin", msg);
        return -1;
    }
    return 0;
}

int32_t RotatedNmsPluginV3::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs)
    {
        return -1;
    }
    outputTypes[0] = DataType::kINT32; // num_detections
    outputTypes[1] = inputTypes[0];    // detection_boxes
    outputTypes[2] = inputTypes[0];    // detection_scores
    outputTypes[3] = DataType::kINT32; // detection_classes
    return 0;
}

int32_t RotatedNmsPluginV3::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs || inputs[0].nbDims != 3)
    {
        return -1;
    }
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* k = exprBuilder.constant(mParams.maxOutputBoxes);
    outputs[0].nbDims = 2;
    outputs[0].d[0] = batch;
    outputs[0].d[1] = exprBuilder.constant(1);
    outputs[1].nbDims = 3;
    outputs[1].d[0] = batch;
    outputs[1].d[1] = k;
    outputs[1].d[2] = exprBuilder.constant(kRotatedBoxValues);
    outputs[2].nbDims = 2;
    outputs[2].d[0] = batch;
    outputs[2].d[1] = k;
    outputs[3].nbDims = 2;
    outputs[3].d[0] = batch;
    outputs[3].d[1] = k;
    return 0;
}

bool RotatedNmsPluginV3::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
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
        types[i] = inOut[i].desc.type;
        formats[i] = inOut[i].desc.format;
    }
    return supportsRotatedNmsFormat(pos, types, formats, nbInputs, nbOutputs);
}

int32_t RotatedNmsPluginV3::getNbOutputs() const noexcept
{
    return kRotatedNmsNbOutputs;
}

size_t RotatedNmsPluginV3::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || inputs[1].max.nbDims != 3)
    {
        return 0;
    }
    // sized for the largest shape of the optimization profile
    Dims const& s = inputs[1].max;
    return rotatedNmsWorkspaceSize((int32_t) s.d[0], (int32_t) s.d[1], (int32_t) s.d[2]);
}

int32_t RotatedNmsPluginV3::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kRotatedNmsNbInputs || nbOutputs != kRotatedNmsNbOutputs)
    {
        return -1;
    }
    std::string const msg = checkRotatedNmsInputDims(in[0].dims, in[1].dims);
    if (!msg.empty())
    {
        logRotatedNmsError("onShapeChange", msg);
        return -1;
    }
    return 0;
}

int32_t RotatedNmsPluginV3::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
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

IPluginV3* RotatedNmsPluginV3::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* RotatedNmsPluginV3::getFieldsToSerialize() noexcept
{
    return mFields.fieldsOf(mParams);
}

char const* RotatedNmsPluginCreatorV3::getPluginName() const noexcept
{
    return kRotatedNmsPluginName;
}

char const* RotatedNmsPluginCreatorV3::getPluginVersion() const noexcept
{
    return kRotatedNmsPluginVersion;
}

PluginFieldCollection const* RotatedNmsPluginCreatorV3::getFieldNames() noexcept
{
    return mFields.fieldNames();
}

char const* RotatedNmsPluginCreatorV3::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

IPluginV3* RotatedNmsPluginCreatorV3::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        // Build and runtime phases both receive the attributes (at runtime: those of getFieldsToSerialize()).
        RotatedNmsParams p;
        std::string const msg = parseRotatedNmsFields(fc, p);
        if (!msg.empty())
        {
            logRotatedNmsError("createPlugin", msg);
            return nullptr;
        }
        auto* plugin = new RotatedNmsPluginV3(p);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

// Static registration when the library is loaded (ctypes.CDLL(path, RTLD_GLOBAL), trtexec --staticPlugins).
// The front-end test harness defines TRTALIGN_NO_PLUGIN_REGISTRATION to run without libnvinfer.
#ifndef TRTALIGN_NO_PLUGIN_REGISTRATION
REGISTER_TENSORRT_PLUGIN(RotatedNmsPluginCreatorV3);
#endif

} // namespace trtalign

#endif // NV_TENSORRT_MAJOR >= 10
