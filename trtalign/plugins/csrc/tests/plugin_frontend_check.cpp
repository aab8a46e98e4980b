// Front-end check of EfficientRotatedNMS_TRT against real TensorRT headers, without libnvinfer and without a GPU.
//
// Built by tests/plugins/test_csrc_nvcc.py with g++ against each TensorRT header set (8.x -> IPluginV2DynamicExt,
// 10.x/11.x -> IPluginV3), linked with the plugin sources compiled with -DTRTALIGN_NO_PLUGIN_REGISTRATION and with
// the two kernel entry points below replaced by recording test doubles (the kernels are tested on their own). It
// exercises what TensorRT calls: the creator's fields, attribute parsing and validation, output shapes for a dynamic
// batch, output types, format combinations, workspace size, serialization round trips and enqueue's parameters.
// Prints "ok <checks>" and exits 0, or prints each failure and exits 1.
#include "rotated_nms_plugin_v2.h"
#include "rotated_nms_plugin_v3.h"

#include "rotated_nms_kernels.cuh"

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace nvinfer1;

namespace
{
int gChecks = 0;
int gFailures = 0;

void check(bool ok, std::string const& what)
{
    ++gChecks;
    if (!ok)
    {
        ++gFailures;
        std::printf("FAIL %s\n", what.c_str());
    }
}

// ---- test doubles of the kernel entry points (recording) ----
trtalign::RotatedNmsParams gLaunched{};
trtalign::NmsDataType gLaunchedType = trtalign::NmsDataType::kFLOAT32;
int gLaunches = 0;
} // namespace

namespace trtalign
{
size_t rotatedNmsWorkspaceSize(int32_t batchSize, int32_t numBoxes, int32_t numClasses)
{
    return (size_t) batchSize * 1000000 + (size_t) numBoxes * 100 + (size_t) numClasses;
}

cudaError_t rotatedNmsLaunch(RotatedNmsParams const& p, NmsDataType type, void const*, void const*, int32_t*, void*,
    void*, int32_t*, void*, size_t, cudaStream_t)
{
    gLaunched = p;
    gLaunchedType = type;
    ++gLaunches;
    return cudaSuccess;
}
} // namespace trtalign

namespace
{
// ---- a minimal expression builder (what TensorRT passes to the shape functions) ----
using DimValue = decltype(std::declval<apiv::VDimensionExpr const&>().getConstantValue());

struct DimImpl : apiv::VDimensionExpr
{
    bool constant = false;
    DimValue value = 0;
    bool isConstant() const override
    {
        return constant;
    }
    DimValue getConstantValue() const override
    {
        return value;
    }
#if NV_TENSORRT_MAJOR >= 10
    bool isSizeTensor() const override
    {
        return false;
    }
#endif
};

struct Dim : IDimensionExpr
{
    DimImpl impl;
    Dim(bool constant, DimValue value)
    {
        impl.constant = constant;
        impl.value = value;
        mImpl = &impl;
    }
};

struct BuilderImpl : apiv::VExprBuilder
{
    std::vector<std::unique_ptr<Dim>> dims;
    IDimensionExpr const* constant(DimValue value) override
    {
        dims.emplace_back(new Dim(true, value));
        return dims.back().get();
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
#if NV_TENSORRT_MAJOR >= 10
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
#endif
};

struct Builder : IExprBuilder
{
    BuilderImpl impl;
    Builder()
    {
        mImpl = &impl;
    }
};

bool isConst(IDimensionExpr const* d, int64_t v)
{
    return d != nullptr && d->isConstant() && (int64_t) d->getConstantValue() == v;
}

// ---- attribute collections ----
struct Attrs
{
    float score = 0.3F, iou = 0.6F;
    int32_t maxOut = 123, background = 2, activation = 1, agnostic = 1, coding = 1;
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};
    PluginFieldCollection const* get()
    {
        fields = {PluginField("score_threshold", &score, PluginFieldType::kFLOAT32, 1),
            PluginField("iou_threshold", &iou, PluginFieldType::kFLOAT32, 1),
            PluginField("max_output_boxes", &maxOut, PluginFieldType::kINT32, 1),
            PluginField("background_class", &background, PluginFieldType::kINT32, 1),
            PluginField("score_activation", &activation, PluginFieldType::kINT32, 1),
            PluginField("class_agnostic", &agnostic, PluginFieldType::kINT32, 1),
            PluginField("box_coding", &coding, PluginFieldType::kINT32, 1),
            PluginField("plugin_version", "1", PluginFieldType::kCHAR, 1)}; // unknown to the creator: ignored
        fc.nbFields = (int32_t) fields.size();
        fc.fields = fields.data();
        return &fc;
    }
};

void checkFieldNames(PluginFieldCollection const* names)
{
    char const* expected[] = {"score_threshold", "iou_threshold", "max_output_boxes", "background_class",
        "score_activation", "class_agnostic", "box_coding"};
    check(names != nullptr && names->nbFields == 7, "creator exposes the 7 EfficientNMS_TRT attributes");
    for (int i = 0; names != nullptr && i < names->nbFields && i < 7; ++i)
    {
        check(std::strcmp(names->fields[i].name, expected[i]) == 0, std::string("field ") + expected[i]);
        PluginFieldType const want = i < 2 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32;
        check(names->fields[i].type == want, std::string("type of ") + expected[i]);
    }
}

// TensorRT's pos/type truth table for [boxes, scores, num_detections, detection_boxes, detection_scores, classes]
template <typename IsSupported>
void checkFormats(IsSupported supported)
{
    DataType const f = DataType::kFLOAT, h = DataType::kHALF, i = DataType::kINT32, q = DataType::kINT8;
    check(supported(0, {f}), "boxes FP32");
    check(supported(0, {h}), "boxes FP16");
    check(!supported(0, {i}), "boxes INT32 rejected");
    check(!supported(0, {q}), "boxes INT8 rejected");
    check(supported(1, {h, h}), "scores same type as boxes");
    check(!supported(1, {f, h}), "scores of another type rejected");
    check(supported(2, {h, h, i}), "num_detections INT32");
    check(!supported(2, {h, h, h}), "num_detections FP16 rejected");
    check(supported(3, {h, h, i, h}), "detection_boxes follow the input type");
    check(!supported(3, {h, h, i, f}), "detection_boxes of another type rejected");
    check(supported(4, {f, f, i, f, f}), "detection_scores follow the input type");
    check(supported(5, {f, f, i, f, f, i}), "detection_classes INT32");
    check(!supported(5, {f, f, i, f, f, f}), "detection_classes FP32 rejected");
}

PluginTensorDesc desc(DataType type, std::vector<int64_t> const& d)
{
    PluginTensorDesc t{};
    t.type = type;
    t.format = TensorFormat::kLINEAR;
    t.dims.nbDims = (int32_t) d.size();
    for (size_t k = 0; k < d.size(); ++k)
    {
        t.dims.d[k] = (decltype(t.dims.d[0])) d[k];
    }
    return t;
}

void checkEnqueueRecorded(int expectLaunches)
{
    check(gLaunches == expectLaunches, "enqueue launches the kernels once");
    check(gLaunched.batchSize == 2 && gLaunched.numBoxes == 7 && gLaunched.numClasses == 3,
        "enqueue passes B, N, C from the input dims");
    check(gLaunchedType == trtalign::NmsDataType::kFLOAT16, "enqueue passes the FP16 input type");
    check(gLaunched.maxOutputBoxes == 123 && gLaunched.backgroundClass == 2 && gLaunched.scoreActivation == 1
            && gLaunched.classAgnostic == 1 && gLaunched.scoreThreshold == 0.3F && gLaunched.iouThreshold == 0.6F,
        "enqueue passes the attributes");
}

#if NV_TENSORRT_MAJOR >= 10
void checkFrontEnd()
{
    std::printf("front end: IPluginV3 (TensorRT %d)\n", NV_TENSORRT_MAJOR);
    trtalign::RotatedNmsPluginCreatorV3 creator;
    check(std::strcmp(creator.getPluginName(), "EfficientRotatedNMS_TRT") == 0, "creator name");
    check(std::strcmp(creator.getPluginVersion(), "1") == 0, "creator version");
    check(std::strcmp(creator.getPluginNamespace(), "") == 0, "creator namespace");
    checkFieldNames(creator.getFieldNames());

    Attrs bad;
    bad.iou = 0.0F;
    check(creator.createPlugin("n", bad.get(), TensorRTPhase::kBUILD) == nullptr, "iou_threshold 0 rejected");
    Attrs bad2;
    bad2.agnostic = 3;
    check(creator.createPlugin("n", bad2.get(), TensorRTPhase::kBUILD) == nullptr, "class_agnostic 3 rejected");
    Attrs bad3;
    bad3.score = -1.0F;
    check(creator.createPlugin("n", bad3.get(), TensorRTPhase::kBUILD) == nullptr, "score_threshold < 0 rejected");

    Attrs attrs;
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("n", attrs.get(), TensorRTPhase::kBUILD));
    check(plugin != nullptr, "createPlugin(build)");
    if (!plugin)
    {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && runtime, "core, build and runtime capabilities");
    check(std::strcmp(core->getPluginName(), "EfficientRotatedNMS_TRT") == 0, "plugin name");
    check(build->getNbOutputs() == 4, "4 outputs");

    DataType in[2] = {DataType::kHALF, DataType::kHALF};
    DataType out[4];
    check(build->getOutputDataTypes(out, 4, in, 2) == 0 && out[0] == DataType::kINT32 && out[1] == DataType::kHALF
            && out[2] == DataType::kHALF && out[3] == DataType::kINT32,
        "output types INT32, input, input, INT32");

    Builder eb;
    Dim batch(false, -1); // a dynamic batch
    DimsExprs inputs[2];
    inputs[0].nbDims = 3;
    inputs[0].d[0] = &batch;
    inputs[0].d[1] = eb.constant(8400);
    inputs[0].d[2] = eb.constant(5);
    inputs[1].nbDims = 3;
    inputs[1].d[0] = &batch;
    inputs[1].d[1] = inputs[0].d[1];
    inputs[1].d[2] = eb.constant(15);
    DimsExprs outs[4];
    check(build->getOutputShapes(inputs, 2, nullptr, 0, outs, 4, eb) == 0, "getOutputShapes");
    check(outs[0].nbDims == 2 && outs[0].d[0] == &batch && isConst(outs[0].d[1], 1), "num_detections [B, 1]");
    check(outs[1].nbDims == 3 && outs[1].d[0] == &batch && isConst(outs[1].d[1], 123) && isConst(outs[1].d[2], 5),
        "detection_boxes [B, K, 5]");
    check(outs[2].nbDims == 2 && outs[2].d[0] == &batch && isConst(outs[2].d[1], 123), "detection_scores [B, K]");
    check(outs[3].nbDims == 2 && outs[3].d[0] == &batch && isConst(outs[3].d[1], 123), "detection_classes [B, K]");

    checkFormats([&](int pos, std::vector<DataType> types) {
        DynamicPluginTensorDesc d[6]{};
        for (size_t k = 0; k < types.size(); ++k)
        {
            d[k].desc.type = types[k];
            d[k].desc.format = TensorFormat::kLINEAR;
        }
        return build->supportsFormatCombination(pos, d, 2, 4);
    });
    DynamicPluginTensorDesc chw[6]{};
    chw[0].desc.type = DataType::kFLOAT;
    chw[0].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(0, chw, 2, 4), "non-linear format rejected");

    DynamicPluginTensorDesc ws[2]{};
    ws[1].max = desc(DataType::kFLOAT, {8, 8400, 15}).dims;
    check(build->getWorkspaceSize(ws, 2, nullptr, 4) == trtalign::rotatedNmsWorkspaceSize(8, 8400, 15),
        "workspace sized for the profile's max shape");

    // serialization: the runtime creates the plugin again from getFieldsToSerialize()
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    check(ser != nullptr && ser->nbFields == 7, "7 serialized fields");
    std::unique_ptr<IPluginV3> again(creator.createPlugin("n", ser, TensorRTPhase::kRUNTIME));
    check(again != nullptr, "createPlugin(runtime) from the serialized fields");
    if (again)
    {
        auto* rt2 = static_cast<IPluginV3OneRuntime*>(again->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginFieldCollection const* ser2 = rt2->getFieldsToSerialize();
        bool same = ser2->nbFields == ser->nbFields;
        for (int k = 0; same && k < ser->nbFields; ++k)
        {
            same = std::strcmp(ser->fields[k].name, ser2->fields[k].name) == 0
                && std::memcmp(ser->fields[k].data, ser2->fields[k].data, 4) == 0;
        }
        check(same, "serialized fields round-trip");
    }
    std::unique_ptr<IPluginV3> cloned(plugin->clone());
    check(cloned != nullptr, "clone");

    PluginTensorDesc inDesc[2] = {desc(DataType::kHALF, {2, 7, 5}), desc(DataType::kHALF, {2, 7, 3})};
    PluginTensorDesc outDesc[4] = {desc(DataType::kINT32, {2, 1}), desc(DataType::kHALF, {2, 123, 5}),
        desc(DataType::kHALF, {2, 123}), desc(DataType::kINT32, {2, 123})};
    check(runtime->onShapeChange(inDesc, 2, outDesc, 4) == 0, "onShapeChange accepts [B,N,5] + [B,N,C]");
    PluginTensorDesc badDesc[2] = {desc(DataType::kHALF, {2, 7, 4}), desc(DataType::kHALF, {2, 7, 3})};
    check(runtime->onShapeChange(badDesc, 2, outDesc, 4) != 0, "onShapeChange rejects boxes [B,N,4]");
    void const* ins[2] = {nullptr, nullptr};
    void* outsPtr[4] = {nullptr, nullptr, nullptr, nullptr};
    check(runtime->enqueue(inDesc, outDesc, ins, outsPtr, nullptr, nullptr) == 0, "enqueue");
    checkEnqueueRecorded(1);
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    check(attached != nullptr, "attachToContext");
}
#else
void checkFrontEnd()
{
    std::printf("front end: IPluginV2DynamicExt (TensorRT %d)\n", NV_TENSORRT_MAJOR);
    trtalign::RotatedNmsPluginCreatorV2 creator;
    check(std::strcmp(creator.getPluginName(), "EfficientRotatedNMS_TRT") == 0, "creator name");
    check(std::strcmp(creator.getPluginVersion(), "1") == 0, "creator version");
    checkFieldNames(creator.getFieldNames());
    Attrs bad;
    bad.iou = 0.0F;
    check(creator.createPlugin("n", bad.get()) == nullptr, "iou_threshold 0 rejected");

    Attrs attrs;
    auto* plugin = static_cast<IPluginV2DynamicExt*>(creator.createPlugin("n", attrs.get()));
    check(plugin != nullptr, "createPlugin");
    if (!plugin)
    {
        return;
    }
    check(std::strcmp(plugin->getPluginType(), "EfficientRotatedNMS_TRT") == 0, "plugin type");
    check(plugin->getNbOutputs() == 4, "4 outputs");
    DataType in[2] = {DataType::kHALF, DataType::kHALF};
    check(plugin->getOutputDataType(0, in, 2) == DataType::kINT32 && plugin->getOutputDataType(1, in, 2) == DataType::kHALF
            && plugin->getOutputDataType(2, in, 2) == DataType::kHALF
            && plugin->getOutputDataType(3, in, 2) == DataType::kINT32,
        "output types INT32, input, input, INT32");

    Builder eb;
    Dim batch(false, -1);
    DimsExprs inputs[2];
    inputs[0].nbDims = 3;
    inputs[0].d[0] = &batch;
    inputs[0].d[1] = eb.constant(8400);
    inputs[0].d[2] = eb.constant(5);
    inputs[1] = inputs[0];
    inputs[1].d[2] = eb.constant(15);
    DimsExprs o0 = plugin->getOutputDimensions(0, inputs, 2, eb);
    DimsExprs o1 = plugin->getOutputDimensions(1, inputs, 2, eb);
    DimsExprs o3 = plugin->getOutputDimensions(3, inputs, 2, eb);
    check(o0.nbDims == 2 && o0.d[0] == &batch && isConst(o0.d[1], 1), "num_detections [B, 1]");
    check(o1.nbDims == 3 && o1.d[0] == &batch && isConst(o1.d[1], 123) && isConst(o1.d[2], 5),
        "detection_boxes [B, K, 5]");
    check(o3.nbDims == 2 && o3.d[0] == &batch && isConst(o3.d[1], 123), "detection_classes [B, K]");

    checkFormats([&](int pos, std::vector<DataType> types) {
        PluginTensorDesc d[6]{};
        for (size_t k = 0; k < types.size(); ++k)
        {
            d[k].type = types[k];
            d[k].format = TensorFormat::kLINEAR;
        }
        return plugin->supportsFormatCombination(pos, d, 2, 4);
    });

    PluginTensorDesc inDesc[2] = {desc(DataType::kHALF, {2, 7, 5}), desc(DataType::kHALF, {2, 7, 3})};
    PluginTensorDesc outDesc[4] = {desc(DataType::kINT32, {2, 1}), desc(DataType::kHALF, {2, 123, 5}),
        desc(DataType::kHALF, {2, 123}), desc(DataType::kINT32, {2, 123})};
    check(plugin->getWorkspaceSize(inDesc, 2, outDesc, 4) == trtalign::rotatedNmsWorkspaceSize(2, 7, 3),
        "workspace size");

    std::vector<char> blob(plugin->getSerializationSize());
    plugin->serialize(blob.data());
    auto* restored = static_cast<IPluginV2DynamicExt*>(creator.deserializePlugin("n", blob.data(), blob.size()));
    check(restored != nullptr, "deserializePlugin");
    if (restored)
    {
        std::vector<char> blob2(restored->getSerializationSize());
        restored->serialize(blob2.data());
        check(blob == blob2, "serialization round-trip");
        restored->destroy();
    }
    check(creator.deserializePlugin("n", blob.data(), blob.size() - 1) == nullptr, "truncated blob rejected");
    plugin->setPluginNamespace("ns");
    IPluginV2DynamicExt* cloned = plugin->clone();
    check(cloned != nullptr && std::strcmp(cloned->getPluginNamespace(), "ns") == 0, "clone keeps the namespace");
    if (cloned)
    {
        cloned->destroy();
    }
    void const* ins[2] = {nullptr, nullptr};
    void* outsPtr[4] = {nullptr, nullptr, nullptr, nullptr};
    check(plugin->enqueue(inDesc, outDesc, ins, outsPtr, nullptr, nullptr) == 0, "enqueue");
    checkEnqueueRecorded(1);
    plugin->destroy();
}
#endif
} // namespace

int main()
{
    checkFrontEnd();
    if (gFailures != 0)
    {
        std::printf("%d of %d checks failed\n", gFailures, gChecks);
        return 1;
    }
    std::printf("ok %d checks\n", gChecks);
    return 0;
}
